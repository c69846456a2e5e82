"""mcqa: multiple choice; ``/verify`` reads the letter the reply chose (``verifier.verify``).

Letter extraction is regular expressions over one reply (microseconds): it runs on the
event loop, no worker pool. Rows carry a ``subject`` that rides along into the output, so
``ng_report +group_by=subject`` breaks accuracy down by subject.
"""

from __future__ import annotations

from typing import Any

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server import ResourcesServer, final_text
from resources_servers.mcqa.verifier import verify


class MultipleChoice(ResourcesServer):
    """No tools: the policy answers once; ``/verify`` scores the letter it chose."""

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        try:
            # reward, extracted_answer (a letter, or None: no choice or several), expected_answer
            return verify(body, final_text(body))
        except ValueError as exc:  # the row's options or expected letter: a data error
            raise HTTPError(400, f"{exc}: fix the row") from None
