"""Build the mcqa rows from a hand-written question bank: ``python resources_servers/mcqa/generate.py``.

Each question below was written by hand with one right answer and wrong options that are
plainly wrong (the first one listed is the most tempting: Sydney for the capital of
Australia); the builder shuffles the options with a seeded generator (so the right letter
moves around), formats the prompt, and scripts an emulator reply that answers correctly in
one of the styles models really use (cycling through them), with a ``"wrong"`` variant in
the same style choosing the most tempting wrong option (what an emulated model with
``accuracy`` below 1 answers on the tasks it gets wrong). Same ``--seed``, same file;
``data/questions.jsonl`` is ``--seed 0``.
"""

# ruff: noqa: E501 - the question bank reads best one question per line

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nemo_gym_cli.tasks import one_turn_script as script_for
from nemo_gym_cli.tasks import write_tasks_command

SYSTEM_PROMPT = (
    "Answer the multiple-choice question. Think briefly if you need to, then state the letter of your answer."
)

# (subject, question, right answer, wrong options). Facts checked by hand; no trick questions.
# fmt: off
BANK: list[tuple[str, str, str, list[str]]] = [
    ("geography", "What is the capital of Australia?", "Canberra", ["Sydney", "Melbourne", "Perth"]),
    ("geography", "Which is the largest ocean on Earth?", "Pacific Ocean", ["Atlantic Ocean", "Indian Ocean", "Arctic Ocean"]),
    ("geography", "In which country is Mount Kilimanjaro?", "Tanzania", ["Kenya", "Uganda", "Ethiopia", "Rwanda"]),
    ("geography", "What is the capital of Canada?", "Ottawa", ["Toronto", "Montreal", "Vancouver"]),
    ("geography", "Which is the largest hot desert in the world?", "Sahara", ["Gobi", "Kalahari", "Atacama"]),
    ("geography", "Which strait separates Spain from Morocco?", "Strait of Gibraltar", ["Bosporus", "Strait of Hormuz", "Bering Strait"]),
    ("geography", "What is the capital of Japan?", "Tokyo", ["Kyoto", "Osaka", "Hiroshima", "Nagoya"]),
    ("geography", "Which is the largest US state by area?", "Alaska", ["Texas", "California", "Montana"]),
    ("geography", "What is the capital of Egypt?", "Cairo", ["Alexandria", "Luxor", "Aswan"]),
    ("geography", "In which country is Lake Baikal?", "Russia", ["Mongolia", "China", "Kazakhstan"]),
    ("geography", "Which river flows through Baghdad?", "Tigris", ["Euphrates", "Nile", "Jordan"]),
    ("geography", "On which continent is the Atacama Desert?", "South America", ["Africa", "Asia", "Australia", "North America"]),
    ("geography", "What is the capital of Kenya?", "Nairobi", ["Mombasa", "Kampala", "Addis Ababa"]),
    ("geography", "Which mountain range separates France from Spain?", "Pyrenees", ["Alps", "Carpathians", "Apennines"]),
    ("science", "What is the chemical symbol for gold?", "Au", ["Ag", "Gd", "Go"]),
    ("science", "Which planet is closest to the Sun?", "Mercury", ["Venus", "Mars", "Earth"]),
    ("science", "Which gas do plants take in for photosynthesis?", "Carbon dioxide", ["Oxygen", "Nitrogen", "Helium"]),
    ("science", "Which organelle produces most of a cell's ATP?", "Mitochondrion", ["Ribosome", "Nucleus", "Golgi apparatus", "Lysosome"]),
    ("science", "At sea level, at what temperature does pure water boil?", "100 °C", ["90 °C", "80 °C", "120 °C"]),
    ("science", "What is the atomic number of carbon?", "6", ["8", "12", "14"]),
    ("science", "Which is the largest planet in the Solar System?", "Jupiter", ["Saturn", "Neptune", "Uranus"]),
    ("science", "What is the SI unit of force?", "Newton", ["Joule", "Watt", "Pascal", "Ampere"]),
    ("science", "Which mineral is the hardest on the Mohs scale?", "Diamond", ["Quartz", "Topaz", "Corundum"]),
    ("science", "Which blood cells carry oxygen?", "Red blood cells", ["White blood cells", "Platelets", "Lymphocytes"]),
    ("science", "Which particle has a negative electric charge?", "Electron", ["Proton", "Neutron", "Photon"]),
    ("science", "How many chromosomes does a typical human body cell have?", "46", ["23", "44", "48"]),
    ("science", "Which gas makes up most of Earth's atmosphere?", "Nitrogen", ["Oxygen", "Argon", "Carbon dioxide", "Hydrogen"]),
    ("science", "What is the chemical formula of table salt?", "NaCl", ["KCl", "NaOH", "CaCO3"]),
    ("history", "Who was the first person to walk on the Moon?", "Neil Armstrong", ["Buzz Aldrin", "Yuri Gagarin", "John Glenn"]),
    ("history", "In which year did the Second World War end?", "1945", ["1944", "1946", "1939"]),
    ("history", "In which year did the Berlin Wall fall?", "1989", ["1987", "1991", "1985"]),
    ("history", "Who was the first President of the United States?", "George Washington", ["John Adams", "Thomas Jefferson", "Benjamin Franklin", "James Madison"]),
    ("history", "Who was the first Roman emperor?", "Augustus", ["Julius Caesar", "Nero", "Caligula"]),
    ("history", "In which year was Magna Carta first sealed?", "1215", ["1066", "1492", "1315"]),
    ("history", "Which ship sank on its maiden voyage in 1912?", "Titanic", ["Lusitania", "Britannic", "Bismarck"]),
    ("history", "Which civilisation built Machu Picchu?", "Inca", ["Aztec", "Maya", "Olmec"]),
    ("history", "In which year was the US Declaration of Independence adopted?", "1776", ["1789", "1765", "1781"]),
    ("history", "Who painted the Mona Lisa?", "Leonardo da Vinci", ["Michelangelo", "Raphael", "Titian", "Caravaggio"]),
    ("history", "In which year did the French Revolution begin?", "1789", ["1776", "1799", "1815"]),
    ("history", "Who was the first woman to win a Nobel Prize?", "Marie Curie", ["Dorothy Hodgkin", "Rosalind Franklin", "Ada Lovelace"]),
    ("history", "Which empire did Genghis Khan found?", "Mongol Empire", ["Ottoman Empire", "Mughal Empire", "Byzantine Empire"]),
    ("history", "In which year did the Great Fire of London happen?", "1666", ["1605", "1688", "1715"]),
    ("math", "What is 7 x 8?", "56", ["54", "48", "64"]),
    ("math", "What is the square root of 144?", "12", ["14", "11", "16"]),
    ("math", "What is the sum of the interior angles of a triangle?", "180 degrees", ["90 degrees", "270 degrees", "360 degrees"]),
    ("math", "Which of these numbers is prime?", "29", ["21", "27", "33", "39"]),
    ("math", "What is 15% of 200?", "30", ["15", "20", "35"]),
    ("math", "What is pi rounded to two decimal places?", "3.14", ["3.41", "3.16", "3.12"]),
    ("math", "How many sides does a hexagon have?", "6", ["5", "7", "8"]),
    ("math", "What is 2 to the power of 10?", "1024", ["1000", "2048", "512"]),
    ("math", "If 3x + 5 = 20, what is x?", "5", ["4", "6", "15"]),
    ("math", "What is the area of a circle of radius 3?", "9π", ["6π", "3π", "12π"]),
    ("math", "What is the least common multiple of 4 and 6?", "12", ["24", "2", "10", "18"]),
    ("math", "Which fraction equals 0.25?", "1/4", ["1/5", "2/5", "1/25"]),
    ("math", "What is the derivative of x^2 with respect to x?", "2x", ["x", "2", "x^3/3"]),
    ("math", "How many degrees are in a right angle?", "90", ["45", "180", "100"]),
    ("literature", "Who wrote 'Pride and Prejudice'?", "Jane Austen", ["Charlotte Brontë", "Emily Brontë", "George Eliot"]),
    ("literature", "Who wrote the novel '1984'?", "George Orwell", ["Aldous Huxley", "Ray Bradbury", "H. G. Wells"]),
    ("literature", "Who wrote 'Romeo and Juliet'?", "William Shakespeare", ["Christopher Marlowe", "Ben Jonson", "John Milton", "Geoffrey Chaucer"]),
    ("literature", "Who wrote 'Don Quixote'?", "Miguel de Cervantes", ["Lope de Vega", "Gabriel García Márquez", "Jorge Luis Borges"]),
    ("literature", "To which poet is 'The Odyssey' traditionally attributed?", "Homer", ["Virgil", "Sophocles", "Ovid"]),
    ("literature", "Who wrote 'War and Peace'?", "Leo Tolstoy", ["Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev"]),
    ("literature", "Who wrote 'Frankenstein'?", "Mary Shelley", ["Bram Stoker", "Percy Bysshe Shelley", "Edgar Allan Poe"]),
    ("literature", "Which author created Sherlock Holmes?", "Arthur Conan Doyle", ["Agatha Christie", "Edgar Allan Poe", "Wilkie Collins"]),
    ("literature", "Who wrote 'One Hundred Years of Solitude'?", "Gabriel García Márquez", ["Isabel Allende", "Mario Vargas Llosa", "Julio Cortázar", "Pablo Neruda"]),
    ("literature", "Who wrote 'The Divine Comedy'?", "Dante Alighieri", ["Petrarch", "Giovanni Boccaccio", "Niccolò Machiavelli"]),
    ("literature", "Who wrote 'Moby-Dick'?", "Herman Melville", ["Nathaniel Hawthorne", "Mark Twain", "Jack London"]),
    ("literature", "Who wrote 'The Great Gatsby'?", "F. Scott Fitzgerald", ["Ernest Hemingway", "John Steinbeck", "William Faulkner"]),
    ("literature", "Who wrote 'The Adventures of Tom Sawyer'?", "Mark Twain", ["Herman Melville", "Washington Irving", "Jack London"]),
    ("literature", "Who wrote 'Crime and Punishment'?", "Fyodor Dostoevsky", ["Leo Tolstoy", "Nikolai Gogol", "Alexander Pushkin"]),
]
# fmt: on

# Reply styles of the scripted emulator answer; {L} is the right letter, {T} its option text.
STYLES = [
    "The answer is ({L}).",
    "**{L}**",
    "{L}) {T}",
    "Answer: {l}",
    "I think it's {L}.",
    "Let me recall the facts.\n\n{L}",
    "({L}) {T}",
    "{T}",
    "Final answer: {L}",
    "The correct option is {L} because it is {T}.",
    "**Answer:** ({L}) {T}",
    "It's not {W}; it's {L}.",
]


def prompt(question: str, options: list[str]) -> str:
    lines = [question, ""] + [
        f"{letter}) {text}" for letter, text in zip(string.ascii_uppercase, options, strict=False)
    ]
    return "\n".join(lines)


def generate(seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i, (subject, question, right, wrong) in enumerate(BANK):
        options = [right, *wrong]
        rng.shuffle(options)
        letter = string.ascii_uppercase[options.index(right)]
        wrong_letter = next(string.ascii_uppercase[j] for j, o in enumerate(options) if o != right)
        style = STYLES[i % len(STYLES)]
        reply = style.format(L=letter, l=letter.lower(), T=right, W=wrong_letter)
        tempting = string.ascii_uppercase[options.index(wrong[0])]  # the most tempting wrong option
        mistake = style.format(L=tempting, l=tempting.lower(), T=wrong[0], W=letter)
        yield {
            "responses_create_params": {
                "input": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": prompt(question, options)},
                ],
                "metadata": {"emulator_script": script_for(reply, mistake)},
            },
            "options": options,
            "expected_answer": letter,
            "subject": subject,
            "meta": {"source": "hand-written", "id": f"mcqa-{i:03d}"},
        }


def main() -> None:
    write_tasks_command(
        generate,
        __doc__,
        Path(__file__).parent,
        noun="questions",
        seed="seed of the option order",
        out="questions.jsonl",
    )


if __name__ == "__main__":
    main()
