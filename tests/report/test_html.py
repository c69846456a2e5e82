"""report.html: self-contained, and it works in a real headless browser."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

VARIANTS = {"small": 0.3, "medium": 0.6, "large": 0.9}
CATEGORIES = ["geo", "math", "code"]


def _rows(name: str, skill: float) -> list[dict[str, Any]]:
    rows = []
    for task in range(12):
        for rollout in range(2):
            passed = (task * 7 + rollout * 3) % 10 < skill * 10
            rows.append(
                {
                    "responses_create_params": {
                        "input": [
                            {"role": "user", "content": f"Question {task}: what is the capital of country {task}?"}
                        ]
                    },
                    "meta": {"category": CATEGORIES[task % 3]},
                    "response": {
                        "model": f"vendor/{name}",
                        "provider": "Acme",
                        "output": [
                            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Look it up."}]},
                            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"country": 1}'},
                            {"type": "function_call_output", "call_id": "c1", "output": "<b>Capital</b> " * 400},
                            {
                                "type": "message",
                                "role": "assistant",
                                "content": [
                                    {
                                        "type": "output_text",
                                        "text": f"{name} says <script>alert(1)</script>, so $\\frac{{1}}{{2}}$ "
                                        "and $\\text{<b>x</b>}$",
                                    }
                                ],
                            },
                        ],
                        "usage": {"input_tokens": 100, "output_tokens": 20, "cost": 0.001 * (1 + skill * 10)},
                    },
                    "reward": 1.0 if passed else 0.0,
                    "_ng_task_index": task,
                    "_ng_rollout_index": rollout,
                    "_ng_latency_s": 0.5 + skill + 0.1 * rollout,
                }
            )
    return rows


@pytest.fixture
def html(tmp_path: Path, write_jsonl: Any, run_report: Any) -> Path:
    for name, skill in VARIANTS.items():
        write_jsonl(tmp_path / "sweep" / f"{name}.jsonl", _rows(name, skill))
    write_jsonl(
        tmp_path / "sweep" / "small_failures.jsonl",
        [{"_ng_task_index": 12, "_ng_rollout_index": 0, "error_type": "timeout", "message": "no answer in 60 s"}],
    )
    code, _, err = run_report(str(tmp_path / "sweep"))
    assert code == 0, err
    return tmp_path / "sweep" / "report" / "report.html"


def test_the_html_fetches_nothing_and_escapes_row_text(html: Path) -> None:
    text = html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text)
    assert "<script>alert(1)</script>" not in text  # model output is data, never markup
    assert text.count("<svg") == 4  # the per-task view is a table
    assert len(text) < 2_000_000
    assert not re.search(r"\$\d(\.\d+)?e-\d", text)  # money never in scientific notation


JS_PLOTS = """Array.from(document.querySelectorAll('figure.plot')).map(f => {
  const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
  return [f.id, box ? Math.round(box.width) : 0, box ? Math.round(box.height) : 0];
})"""
JS_LAYOUT = r"""(() => {
  const cards = Array.from(document.querySelectorAll('figure.plot')).map(f => {
    const svg = f.querySelector('svg'), caption = f.querySelector('figcaption');
    const used = svg.getBoundingClientRect().height + caption.getBoundingClientRect().height;
    return [f.id, used / f.getBoundingClientRect().height];
  });
  const picks = Array.from(document.querySelectorAll('#verdict ~ .picks .pick'))
    .map(p => p.innerText.replace(/\s+/g, ' ').trim());
  const verdictTop = document.getElementById('verdict').getBoundingClientRect().top;
  const variantsTop = document.getElementById('variants').getBoundingClientRect().top;
  return {cards, picks, verdictFirst: verdictTop < variantsTop};
})()"""
JS_TASKS = """(() => {
  const rows = Array.from(document.querySelectorAll('#task-table tbody tr'));
  const link = document.querySelector('#task-table tbody td.cell a');
  return {rows: rows.length, first: rows[0].textContent, href: link.getAttribute('href')};
})()"""
JS_FOLLOW = """new Promise(resolve => {
  const link = Array.from(document.querySelectorAll('#task-table tbody tr'))
    .find(r => r.firstChild.textContent === '#7').querySelectorAll('td.cell a')[1];
  window.addEventListener('hashchange', () => setTimeout(() => {
    const target = document.querySelector('#runs .run.target');
    resolve({hash: location.hash, select: document.getElementById('task-select').selectedOptions[0].textContent,
             target: target && target.dataset.variant, open: target && target.querySelector('details.fields').open,
             fields: target && target.querySelector('details.fields pre').textContent});
  }, 50), {once: true});
  link.click();
})"""
JS_PICK = """(() => {
  const select = document.getElementById('task-select');
  select.value = Array.from(select.options).find(o => o.textContent.startsWith('#5 ')).value;
  select.dispatchEvent(new Event('change'));
  return document.getElementById('task-prompt').textContent;
})()"""
JS_RUNS = """Array.from(document.querySelectorAll('#runs .run')).map(c => ({
  variant: c.dataset.variant,
  kinds: Array.from(c.querySelectorAll('.item')).map(i => i.className),
  text: c.textContent,
  where: c.querySelector('a.where') ? c.querySelector('a.where').textContent : null,
  href: c.querySelector('a.where') ? c.querySelector('a.where').getAttribute('href') : null,
  call: c.querySelector('.item.call') ? c.querySelector('.item.call').textContent : null,
  math: Array.from(c.querySelectorAll('.item math')).map(m => [m.namespaceURI, m.textContent]),
  bold: c.querySelectorAll('b').length,
  metaWrap: getComputedStyle(c.querySelector('.meta')).wordBreak,
  whereLines: Math.round(c.querySelector('a.where').getBoundingClientRect().height
    / parseFloat(getComputedStyle(c.querySelector('a.where')).lineHeight)),
}))"""
JS_SEARCH = """(() => {
  const search = document.getElementById('task-search');
  search.value = '#12';
  search.dispatchEvent(new Event('input'));
  return [document.getElementById('task-select').options.length, document.getElementById('runs').textContent];
})()"""


@pytest.mark.e2e
def test_the_report_renders_every_plot_and_the_trajectory_viewer_in_chromium(html: Path, browser_page: Any) -> None:
    async def drive() -> tuple[Any, ...]:
        async with browser_page() as page:
            await page.open(html.as_uri())
            plots = await page.evaluate(JS_PLOTS)
            layout = await page.evaluate(JS_LAYOUT)
            task_table = await page.evaluate(JS_TASKS)
            options = await page.evaluate("document.getElementById('task-select').options.length")
            prompt = await page.evaluate(JS_PICK)
            runs = await page.evaluate(JS_RUNS)
            followed = await page.evaluate(JS_FOLLOW)
            search = await page.evaluate(JS_SEARCH)
            return plots, layout, task_table, options, prompt, runs, followed, search, page.errors, page.requests

    plots, layout, task_table, options, prompt, runs, followed, search, errors, requests = asyncio.run(drive())
    assert errors == [] and requests == []
    assert [p[0] for p in plots] == ["plot-reward_vs_cost", "plot-reward_by_group", "plot-latency", "plot-cost"]
    assert all(width > 100 and height > 100 for _, width, height in plots), plots
    # no blank card: the plot and its caption fill each card (padding and border aside)
    assert all(share > 0.85 for _, share in layout["cards"]), layout["cards"]
    assert layout["verdictFirst"] and len(layout["picks"]) == 3
    assert layout["picks"][0].startswith("BEST REWARD large95% confident large is best: beats medium by +0.292")
    assert "e-0" not in " ".join(layout["picks"])
    # the per-task table: every task a row, hardest first, each cell a link into the viewer
    assert task_table["rows"] == 13
    assert task_table["href"].startswith("#task=")
    assert followed["hash"] == "#task=7&variant=medium" and followed["select"].startswith("#7 ")
    assert followed["target"] == "medium" and followed["open"]  # landed on the row, its other fields shown
    assert '"reward": ' in followed["fields"] and '"_ng_task_index": 7' in followed["fields"]
    assert options == 13  # 12 tasks and the one that only failed
    assert "Question 5: what is the capital of country 5?" in prompt
    assert [r["variant"] for r in runs] == ["large", "medium", "small"]  # files in name order
    for run in runs:
        assert run["kinds"] == ["item reasoning", "item call", "item output", "item message assistant"]
        assert f"{run['variant']} says <script>alert(1)</script>" in run["text"]
        assert run["call"] == 'tool call: lookup{\n  "country": 1\n}'  # arguments indented
        assert "more characters in the file" in run["text"]  # the long tool output is cut
        assert re.fullmatch(rf".*/sweep/{run['variant']}\.jsonl:1[01]", run["where"])
        assert run["href"] == f"#task=5&variant={run['variant']}"
        # LaTeX as MathML; a formula holding markup stays text, never an element
        assert run["math"] == [["http://www.w3.org/1998/Math/MathML", "12"]]
        assert "$\\text{<b>x</b>}$" in run["text"] and run["bold"] == 0
        assert run["metaWrap"] == "normal" and run["whereLines"] == 1  # no word cut in two
    count, text = search
    assert count == 1 and "did not run this task" in text and "timeout: no answer in 60 s" in text


@pytest.mark.e2e
def test_the_browser_harness_catches_errors_and_outside_requests(tmp_path: Path, browser_page: Any) -> None:
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        '<html><body><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("bad"); throw new Error("boom")</script></body></html>'
    )

    async def drive() -> tuple[list[str], list[str]]:
        async with browser_page() as page:
            await page.open(page_file.as_uri())
            await page.evaluate("new Promise(r => setTimeout(r, 100))")
            return page.errors, page.requests

    errors, requests = asyncio.run(drive())
    assert "console: bad" in errors
    assert any("boom" in e for e in errors)
    assert requests == ["http://127.0.0.1:9/x.png"]
