"""Build the llm_judge rows from a hand-written bank: ``python resources_servers/llm_judge/generate.py``.

Each entry is an open question, a reference answer (the key facts a correct answer must
state), and a policy answer written in other words that a fair judge would accept. The
row scripts both models for offline runs: ``responses_create_params.metadata.emulator_script``
is the policy's reply, and ``judge_script`` is the judge's (REASONING / SCORE / VERDICT:
CORRECT), which the verifier passes on as the judge request's own
``metadata.emulator_script`` (``judge.build_judge_request``). Deterministic: no randomness.
"""

# ruff: noqa: E501 - the bank reads best one entry per line

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nemo_gym_cli.tasks import write_tasks_command

SYSTEM_PROMPT = "Answer the question accurately in two or three sentences."

# (subject, question, reference answer, policy answer written differently)
# fmt: off
BANK: list[tuple[str, str, str, str]] = [
    ("science", "Why does Earth have seasons?", "Because Earth's axis is tilted (about 23.4 degrees) relative to its orbit, so each hemisphere gets more direct sunlight and longer days for part of the year; it is not because of changes in distance from the Sun.", "Seasons come from the tilt of Earth's rotation axis: as Earth orbits, one hemisphere leans toward the Sun and receives more direct light and longer days, while the other leans away. The Earth-Sun distance is not the cause."),
    ("science", "Why is the sky blue on a clear day?", "Air molecules scatter short (blue) wavelengths of sunlight much more strongly than long (red) ones (Rayleigh scattering), so blue light reaches our eyes from all directions of the sky.", "Sunlight is scattered by the gas molecules in the atmosphere, and shorter blue wavelengths are scattered far more than red ones. That scattered blue light comes at us from every part of the sky."),
    ("science", "What do plants produce in photosynthesis, and from what?", "Using light energy, plants turn carbon dioxide and water into glucose (sugar) and release oxygen.", "They use the energy of sunlight to make sugars such as glucose out of water and carbon dioxide, giving off oxygen as a by-product."),
    ("science", "Why do we see lightning before we hear thunder?", "Light travels much faster (about 300,000 km/s) than sound (about 343 m/s in air), so the flash arrives almost instantly while the sound takes about 3 seconds per kilometre.", "Both start at the same moment, but light moves nearly a million times faster than sound in air. The flash reaches us almost at once, while the thunder needs roughly three seconds for every kilometre."),
    ("science", "What is the difference between weather and climate?", "Weather is the state of the atmosphere at a given place and time (hours to days); climate is the long-term average and variability of weather in a region, usually over 30 years or more.", "Weather describes short-term conditions such as today's rain or temperature, while climate is the typical pattern of weather in a region averaged over decades."),
    ("science", "How do vaccines protect against disease?", "They expose the immune system to a harmless form or part of a pathogen (or instructions to make one), so it builds antibodies and memory cells that respond quickly if the real pathogen infects the body later.", "A vaccine shows the immune system a safe piece or weakened version of a germ, which trains it to make antibodies and memory cells. If the real germ arrives later, the body recognises it and fights it off fast."),
    ("science", "Why does ice float on water?", "Water expands when it freezes: hydrogen bonds lock molecules into an open crystal lattice, so ice is less dense (about 0.92 g/cm3) than liquid water and floats.", "When water freezes its molecules arrange into an open, hydrogen-bonded crystal that takes up more space, making ice about 9% less dense than liquid water, so it floats."),
    ("science", "What causes the tides in Earth's oceans?", "Mainly the Moon's gravity (and to a lesser extent the Sun's), whose pull differs across Earth and raises bulges of water on the sides facing and opposite the Moon; Earth's rotation through these bulges gives roughly two high tides a day.", "The gravitational pull of the Moon, helped by the Sun, stretches the oceans into two bulges, one toward the Moon and one on the far side. As Earth spins through them, most coasts get two high and two low tides each day."),
    ("history", "Why did the Titanic sink?", "On its maiden voyage in April 1912 it struck an iceberg that opened several forward watertight compartments, too many for the ship to stay afloat, and it flooded and sank.", "In April 1912, on its first voyage, the Titanic hit an iceberg that breached more of its forward watertight compartments than the design could survive, so it filled with water and went down."),
    ("history", "What was the main purpose of the Marshall Plan?", "A US programme (1948-1952) of economic aid to rebuild Western European economies after the Second World War, also meant to limit the spread of communism.", "It was American economic aid, starting in 1948, to help Western Europe recover and rebuild after World War II, partly to keep communism from spreading there."),
    ("history", "What was the significance of the printing press invented by Gutenberg?", "His movable-type press (around 1440-1450) made books far cheaper and faster to produce, spreading literacy and ideas widely and helping the Reformation and the Scientific Revolution.", "Gutenberg's movable-type printing in the mid-1400s let books be produced quickly and cheaply, which spread knowledge and literacy across Europe and fuelled movements such as the Reformation and the rise of science."),
    ("history", "Why was the fall of the Berlin Wall in 1989 important?", "It marked the collapse of the communist regimes in Eastern Europe and the end of the Cold War division of Europe, and led to German reunification in 1990.", "The opening of the Wall in November 1989 symbolised the end of communist rule in Eastern Europe and of the Cold War split of Europe, and it opened the way to Germany's reunification the following year."),
    ("history", "What was the Silk Road?", "A network of trade routes linking China with Central Asia, the Middle East and Europe from about the 2nd century BC, carrying silk, spices and other goods as well as ideas, religions and technologies.", "It was a web of overland and sea trade routes that connected China to Central Asia, Persia and the Mediterranean for many centuries, moving goods like silk and spices along with ideas and religions."),
    ("history", "Who was Nelson Mandela and why is he known?", "A South African anti-apartheid leader imprisoned for 27 years, released in 1990, who became the country's first democratically elected (and first Black) president in 1994 and promoted reconciliation.", "Mandela fought against apartheid in South Africa, spent 27 years in prison, and after his release became South Africa's first Black president in 1994, elected in the first fully democratic vote, working for reconciliation."),
    ("history", "What started the First World War?", "The assassination of Archduke Franz Ferdinand of Austria-Hungary in Sarajevo in June 1914 triggered it, through a chain of alliances, militarism and imperial rivalries that drew the great powers in.", "The trigger was the killing of Austria-Hungary's heir, Archduke Franz Ferdinand, in Sarajevo in 1914; the alliance system and rivalries between the great powers then turned a regional crisis into a world war."),
    ("history", "What was the Apollo 11 mission?", "The 1969 NASA mission that made the first crewed Moon landing: Neil Armstrong and Buzz Aldrin walked on the Moon while Michael Collins orbited, and all returned safely.", "Apollo 11, in July 1969, was the first time humans landed on the Moon: Armstrong and Aldrin walked on the surface while Collins stayed in lunar orbit, and the crew came back to Earth safely."),
    ("geography", "Why is the Dead Sea so salty?", "It is a landlocked lake with no outlet in a hot, dry basin: water leaves only by evaporation, leaving the dissolved salts behind and concentrating them to about ten times seawater.", "Water flows into the Dead Sea but never out, and the desert heat evaporates it quickly, so the salts stay behind and build up to roughly ten times the saltiness of the ocean."),
    ("geography", "What is a delta and how does it form?", "A landform at a river's mouth where the river slows on entering a sea or lake and deposits its sediment, building up land often in a fan or triangle shape (like the Nile delta).", "When a river reaches a sea or lake it slows down and drops the sediment it carries; over time this builds new land at the mouth, often fan-shaped, such as the Nile delta."),
    ("geography", "Why are there many volcanoes around the Pacific Ocean?", "The Pacific is ringed by tectonic plate boundaries, mostly subduction zones, where oceanic plates sink under others and melt, feeding volcanoes: the 'Ring of Fire'.", "The Pacific basin is surrounded by plate boundaries where ocean plates dive beneath neighbouring plates; the melting this causes feeds the chain of volcanoes called the Ring of Fire."),
    ("geography", "What is a monsoon?", "A seasonal reversal of prevailing winds, most famously in South Asia, bringing a very wet season (summer winds from the ocean) and a dry season (winter winds from the land).", "A monsoon is a seasonal shift in the winds: in South Asia, summer winds blow in from the ocean and bring heavy rains, while in winter they blow from the land and the weather is dry."),
    ("geography", "Why is it colder at the top of a mountain than at its base?", "Air pressure falls with altitude, so rising air expands and cools, and thinner air holds less heat; temperature drops by about 6.5 degrees C per 1,000 m on average.", "Higher up the air is thinner and at lower pressure; air that rises expands and cools, and the thin air keeps less heat, so temperatures fall by roughly 6.5 degrees C for every kilometre of height."),
    ("geography", "What is the difference between a country's GDP and GDP per capita?", "GDP is the total value of goods and services a country produces in a period; GDP per capita divides it by the population, giving average output per person.", "GDP measures the total economic output of a country in a year, while GDP per capita is that total divided by the number of people, an average per person."),
    ("computing", "What is the difference between RAM and storage (such as an SSD)?", "RAM is fast, volatile working memory that holds running programs and data and loses its contents when power is off; storage like an SSD is slower but persistent and keeps files when powered off.", "RAM is the computer's short-term working memory: very fast, but its contents vanish when the machine is turned off. An SSD is long-term storage that is slower but keeps files permanently."),
    ("computing", "What does a compiler do?", "It translates source code written in a programming language into another form, usually machine code or bytecode, that a computer can execute, often checking for errors and optimising on the way.", "A compiler takes a program's source code and converts it into machine code (or another lower-level form) that the computer can run, catching errors and optimising the code along the way."),
    ("computing", "What is public-key cryptography?", "Encryption with a pair of keys: a public key anyone may use to encrypt or verify, and a private key kept secret to decrypt or sign; knowing the public key does not reveal the private one.", "It uses two related keys: a public one that can be shared freely for encrypting messages or checking signatures, and a private one kept secret for decrypting or signing. The private key cannot practically be worked out from the public key."),
    ("computing", "What is the purpose of a hash table?", "To store key-value pairs so that lookups, inserts and deletes take constant time on average, by using a hash function to compute the index where each key's value is kept.", "A hash table maps keys to values and finds them fast: a hash function turns each key into an array index, so adding, finding and removing entries takes constant time on average."),
    ("computing", "What is the difference between HTTP and HTTPS?", "HTTPS is HTTP over TLS: the connection is encrypted and the server is authenticated with a certificate, so traffic cannot easily be read or altered in transit; plain HTTP is unencrypted.", "HTTPS is the same protocol as HTTP but carried over an encrypted TLS connection, with the server proving its identity by a certificate, which stops eavesdropping and tampering; HTTP sends everything in the clear."),
    ("computing", "What is version control, such as git, used for?", "To record the history of changes to files (usually source code), so people can see who changed what and when, go back to earlier versions, work in parallel on branches and merge their work.", "Version control keeps a full history of changes to a project's files so you can review or undo changes, return to any earlier state, and let several people work on separate branches that are later merged."),
    ("health", "Why should antibiotics not be used for the common cold?", "Colds are caused by viruses, and antibiotics only act on bacteria, so they do not help; needless use causes side effects and promotes antibiotic resistance.", "The common cold is viral, and antibiotics kill bacteria, not viruses, so they do nothing for it; taking them anyway risks side effects and helps bacteria become resistant."),
    ("health", "What does insulin do in the body?", "Insulin is a hormone made by the pancreas that lets cells take up glucose from the blood and helps store it (as glycogen), lowering blood sugar.", "It is a hormone from the pancreas that allows the body's cells to absorb sugar from the bloodstream and store the excess, which brings blood glucose levels down."),
    ("health", "Why is sleep important for health?", "During sleep the body and brain recover: memories are consolidated, tissues repair, hormones and the immune system are regulated; chronic lack of sleep harms attention, mood, metabolism and heart health.", "Sleep lets the brain consolidate memories and the body repair itself and regulate hormones and immunity. Regularly sleeping too little impairs concentration and mood and raises the risk of problems such as obesity and heart disease."),
    ("health", "How does regular exercise benefit the heart?", "It strengthens the heart muscle so it pumps more blood per beat (lowering resting heart rate), lowers blood pressure and improves cholesterol, reducing the risk of heart disease.", "Exercise makes the heart a stronger pump that moves more blood with each beat, so the resting pulse drops; it also lowers blood pressure and improves cholesterol, cutting the risk of heart disease."),
]
# fmt: on


def script_for(answer_text: str) -> str:
    """The emulator script of a one-turn answer: a JSON list of turns, here ``[{"text": ...}]``."""
    return json.dumps([{"text": answer_text}])


def judge_turns(subject: str) -> list[dict[str, str]]:
    """The scripted judge's reply to the scripted policy answer (a list of turns, not yet JSON)."""
    return [
        {
            "text": f"REASONING: The answer states the same key {subject} facts as the reference, in other words.\n"
            "SCORE: 1\nVERDICT: CORRECT"
        }
    ]


def generate() -> Iterator[dict[str, Any]]:
    for i, (subject, question, reference, answer) in enumerate(BANK):
        yield {
            "responses_create_params": {
                "input": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
                "metadata": {"emulator_script": script_for(answer)},
            },
            "question": question,
            "reference_answer": reference,
            "subject": subject,
            "judge_script": judge_turns(subject),
            "meta": {"source": "hand-written", "id": f"judge-{i:03d}"},
        }


def main() -> None:
    write_tasks_command(generate, __doc__, Path(__file__).parent, noun="questions", seed=None, out="questions.jsonl")


if __name__ == "__main__":
    main()
