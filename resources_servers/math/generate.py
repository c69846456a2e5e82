"""Generate math word problems with exact answers: ``python resources_servers/math/generate.py -n 300 --seed 0``.

Arithmetic (shopping, change, unit prices, fractions, averages), rates (distance, work),
ages, percentages and algebra (linear equations, systems of two equations, quadratics with
integer roots, evaluating a polynomial). Every answer is computed with integers and
``fractions.Fraction``, so it is exact, and written in one canonical form math-verify reads:
an integer (``-12``), a terminating decimal (``8.75``), a reduced fraction (``19/12``),
``x = 3/4``, an ordered pair ``(3, -2)``, or the roots of a quadratic in increasing order
(``-4, 1``, which math-verify reads as a set).

Each row carries an emulator script: one turn whose text is a short worked solution ending
with ``\\boxed{<answer>}``, so the offline emulator scores 1, and whose ``"wrong"`` variant
makes a mistake people and models really make on that kind of problem (the cost instead of
the change, the two times averaged, a sign dropped...), so an emulated model with
``accuracy`` below 1 gives plausible wrong answers that score 0. Same ``--seed``, same file.
Writes ``data/generated_<n>.jsonl`` beside this file (git-ignored) unless ``-o`` is given;
``data/problems.jsonl`` is ``-n 240 --seed 0``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from nemo_gym_cli.tasks import one_turn_script as script_for
from nemo_gym_cli.tasks import write_tasks_command

SYSTEM_PROMPT = (
    "Solve the math problem. Reason step by step, then give the final answer on the last line "
    "as \\boxed{answer}: an exact number, fraction, equation or list of values, without units."
)
NAMES = "Ana Ben Chloe Dev Elena Farid Grace Hiro Ines Jamal Kira Liam Maya Noah".split()
ITEMS = [
    ("notebook", "notebooks"),
    ("pen", "pens"),
    ("apple", "apples"),
    ("sandwich", "sandwiches"),
    ("ticket", "tickets"),
    ("candle", "candles"),
    ("mug", "mugs"),
    ("plant", "plants"),
    ("book", "books"),
    ("scarf", "scarves"),
]


class Problem(NamedTuple):
    text: str  # the problem as the user asks it
    answer: str  # the canonical exact answer
    subject: str
    steps: str  # a short worked solution
    wrong: str  # the answer of a typical mistake ("" when the mistake happens to be right)
    slip: str  # the worked solution of that mistake


def off_by_one(answer: str) -> str:
    """The answer with its last number changed by one: ``(3, 2)`` -> ``(3, 3)``."""
    digits = list(re.finditer(r"\d+", answer))[-1]
    return f"{answer[: digits.start()]}{int(digits.group()) + 1}{answer[digits.end() :]}"


def number(value: Fraction | int) -> str:
    """An exact value in canonical form: integer, terminating decimal (<= 4 places), else p/q."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 5):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if value < 0 else ""
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def fraction(value: Fraction | int) -> str:
    """An exact value as an integer or a reduced fraction p/q (algebra answers)."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def poly(*terms: tuple[int, str]) -> str:
    """``poly((3, "x^2"), (-1, "x"), (0, ""))`` -> ``3x^2 - x``: signs folded, zero terms and
    unit coefficients dropped."""
    out = ""
    for coef, var in terms:
        if coef == 0:
            continue
        digits = str(abs(coef)) if abs(coef) != 1 or not var else ""
        sign = ("-" if coef < 0 else "") if not out else (" - " if coef < 0 else " + ")
        out += f"{sign}{digits}{var}"
    return out or "0"


def money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


def problem(text: str, answer: str, subject: str, steps: str, wrong: str, slip: str) -> Problem:
    """A problem whose typical mistake is ``wrong`` (reached by ``slip``); where that mistake
    happens to give the right answer (canonical forms: equal values are equal strings), a
    slip in the last digit instead."""
    if wrong == answer:
        wrong, slip = off_by_one(answer), steps
    return Problem(text, answer, subject, steps, wrong, slip)


# --- arithmetic --------------------------------------------------------------------------


def shopping_total(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    (one, many), (one2, many2) = rng.sample(ITEMS, 2)
    q1, q2 = rng.randint(2, 9), rng.randint(1, 5)
    p1, p2 = rng.randrange(50, 1500, 5), rng.randrange(50, 2500, 5)
    total = q1 * p1 + q2 * p2
    text = (
        f"{name} buys {q1} {many} at {money(p1)} each and {q2} {many2 if q2 > 1 else one2} at {money(p2)} each. "
        "How many dollars does "
        f"{name} spend in total?"
    )
    answer = number(Fraction(total, 100))
    steps = f"{q1} x {money(p1)} = {money(q1 * p1)} and {q2} x {money(p2)} = {money(q2 * p2)}; together {money(total)}."
    slip = f"{q1} x {money(p1)} = {money(q1 * p1)}, plus {money(p2)}: {money(q1 * p1 + p2)}."  # one of the second item
    return problem(text, answer, "arithmetic", steps, number(Fraction(q1 * p1 + p2, 100)), slip)


def change_due(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    one, many = rng.choice(ITEMS)
    q, price = rng.randint(2, 6), rng.randrange(75, 900, 5)
    cost = q * price
    bill = next(b for b in (1000, 2000, 5000, 10000) if b > cost)
    text = (
        f"{name} buys {q} {many} for {money(price)} each and pays with a {money(bill)} bill. "
        f"How many dollars of change does {name} get?"
    )
    steps = f"The {many} cost {money(cost)}; {money(bill)} - {money(cost)} = {money(bill - cost)}."
    slip = f"{q} x {money(price)} = {money(cost)}."  # the cost, not the change
    return problem(text, number(Fraction(bill - cost, 100)), "arithmetic", steps, number(Fraction(cost, 100)), slip)


def unit_price(rng: random.Random) -> Problem:
    one, many = rng.choice(ITEMS)
    n, m, unit = rng.randint(3, 8), rng.randint(2, 15), rng.randrange(25, 700, 5)
    text = f"{n} {many} cost {money(n * unit)}. At the same price per {one}, how many dollars do {m} {many} cost?"
    steps = f"One {one} costs {money(n * unit)} / {n} = {money(unit)}, so {m} cost {money(m * unit)}."
    slip = f"{m} x {money(n * unit)} = {money(m * n * unit)}."  # the price of n taken as the unit price
    return problem(
        text, number(Fraction(m * unit, 100)), "arithmetic", steps, number(Fraction(m * n * unit, 100)), slip
    )


def fraction_arithmetic(rng: random.Random) -> Problem:
    a, c = rng.randint(1, 9), rng.randint(1, 9)
    b, d = rng.randint(2, 12), rng.randint(2, 12)
    op = rng.choice(["+", "-", "\\times", "\\div"])
    x, y = Fraction(a, b), Fraction(c, d)
    value = {"+": x + y, "-": x - y, "\\times": x * y, "\\div": x / y}[op]
    text = f"Compute $\\frac{{{a}}}{{{b}}} {op} \\frac{{{c}}}{{{d}}}$ and give the result as a reduced fraction."
    # Numerators and denominators combined separately; division done as multiplication.
    slipped = {"+": Fraction(a + c, b + d), "-": Fraction(a - c, b + d), "\\times": x / y, "\\div": x * y}[op]
    slip = f"Combining the numerators and the denominators gives {fraction(slipped)}."
    steps = f"Over a common denominator the result is {fraction(value)}."
    return problem(text, fraction(value), "arithmetic", steps, fraction(slipped), slip)


def missing_score(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    k = rng.randint(3, 5)
    scores = [rng.randint(60, 100) for _ in range(k)]
    missing = rng.randint(55, 100)
    total = sum(scores) + missing
    while total % (k + 1):  # a whole-number average keeps the question natural
        missing -= 1
        total -= 1
    average = total // (k + 1)
    text = (
        f"{name}'s first {k} test scores are {', '.join(map(str, scores))}. What score does {name} need "
        f"on the next test for the average of all {k + 1} tests to be exactly {average}?"
    )
    steps = f"The {k + 1} scores must add up to {k + 1} x {average} = {total}; {total} - {sum(scores)} = {missing}."
    slip = f"To average {average}, the next score should be {average}."  # the target average itself
    return problem(text, str(missing), "arithmetic", steps, str(average), slip)


# --- rates, ages, percentages ------------------------------------------------------------


def distance_rate(rng: random.Random) -> Problem:
    speed, t1 = rng.randint(30, 110), rng.randint(2, 6)
    t2 = Fraction(rng.choice([Fraction(3, 2), Fraction(5, 2), Fraction(4), Fraction(7), Fraction(9)]))
    vehicle = rng.choice(["car", "train", "bus", "cyclist"])
    text = (
        f"A {vehicle} travels {speed * t1} km in {t1} hours. At the same speed, how many kilometres does it "
        f"travel in {number(Fraction(t2))} hours?"
    )
    value = Fraction(speed) * t2
    steps = f"The speed is {speed * t1} / {t1} = {speed} km/h; {speed} x {number(Fraction(t2))} = {number(value)}."
    slipped = Fraction(speed * t1) * t2  # the distance taken as the speed
    slip = f"{speed * t1} x {number(Fraction(t2))} = {number(slipped)}."
    return problem(text, number(value), "rates", steps, number(slipped), slip)


def work_together(rng: random.Random) -> Problem:
    a, b = rng.sample(range(2, 13), 2)
    task = rng.choice(["fill a pool", "paint a fence", "mow a field", "sort the mail"])
    names = rng.sample(NAMES, 2)
    value = Fraction(a * b, a + b)
    text = (
        f"{names[0]} can {task} alone in {a} hours and {names[1]} can do it alone in {b} hours. Working together "
        "at those rates, how many hours do they take? Give an exact answer."
    )
    per_hour = fraction(Fraction(a + b, a * b))
    steps = f"Together they do 1/{a} + 1/{b} = {per_hour} of the job per hour, so {fraction(value)} hours."
    slipped = Fraction(a + b, 2)  # the two times averaged
    slip = f"On average one of them takes ({a} + {b}) / 2 = {fraction(slipped)} hours."
    return problem(text, fraction(value), "rates", steps, fraction(slipped), slip)


def ages_multiple(rng: random.Random) -> Problem:
    child = rng.randint(3, 15)
    times = rng.randint(3, 5)
    years = child * (times - 2)  # then parent + years == 2 * (child + years)
    parent, child_word, his, he = rng.choice(
        [("mother", "daughter", "her", "she"), ("father", "son", "his", "he"), ("aunt", "nephew", "her", "she")]
    )
    text = (
        f"A {parent} is {times} times as old as {his} {child_word}. In {years} years {he} will be twice as old as "
        f"{his} {child_word}. How old is the {child_word} now?"
    )
    steps = f"With age c: {times}c + {years} = 2(c + {years}), so c = {child}."
    slip = f"With age c: {times}c + {years} = 2(c + {years}), so c = {child} and the {parent} is {times * child}."
    return problem(text, str(child), "algebra", steps, str(times * child), slip)  # the parent's age


def ages_sum(rng: random.Random) -> Problem:
    younger, gap = rng.randint(4, 40), rng.randint(1, 15)
    a, b = rng.sample(NAMES, 2)
    text = f"The sum of {a}'s and {b}'s ages is {2 * younger + gap}. {a} is {gap} years older than {b}. How old is {b}?"
    steps = f"b + (b + {gap}) = {2 * younger + gap}, so b = {younger}."
    slip = f"b + (b + {gap}) = {2 * younger + gap}, so b = {younger} and the other is {younger + gap}."
    return problem(text, str(younger), "algebra", steps, str(younger + gap), slip)  # the older one's age


def percent_of(rng: random.Random) -> Problem:
    p, n = rng.choice([5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75, 80]), rng.randrange(20, 900, 4)
    value = Fraction(p * n, 100)
    slipped = Fraction(p * n, 10)  # the decimal point one place off
    slip = f"{p}/10 x {n} = {number(slipped)}."
    return problem(
        f"What is {p}% of {n}?",
        number(value),
        "percentages",
        f"{p}/100 x {n} = {number(value)}.",
        number(slipped),
        slip,
    )


def discount(rng: random.Random) -> Problem:
    price, p = rng.randrange(20, 400, 2), rng.choice([10, 15, 20, 25, 30, 40, 50])
    one, _ = rng.choice(ITEMS)
    value = Fraction(price * (100 - p), 100)
    text = f"A {one} that costs ${price} is on sale for {p}% off. What is the sale price in dollars?"
    off = Fraction(price * p, 100)
    steps = f"The discount is {number(off)}; {price} minus that is {number(value)}."
    slip = f"{p}% of {price} is {number(off)}."  # the discount, not the sale price
    return problem(text, number(value), "percentages", steps, number(off), slip)


def percent_change(rng: random.Random) -> Problem:
    old, p = 50, 5
    while old * p % 100:  # a whole-number new value
        old, p = rng.choice([20, 40, 50, 80, 120, 200, 250, 400]), rng.choice([5, 10, 15, 20, 25, 30, 50, 75])
    up = rng.random() < 0.6
    new = old * (100 + p) // 100 if up else old * (100 - p) // 100
    what = rng.choice(["The price of a bike", "A town's population in hundreds", "The number of members of a club"])
    direction = "increase" if up else "decrease"
    text = f"{what} went from {old} to {new}. By what percent did it {direction}? Give the number of percent."
    steps = f"The change is {abs(new - old)} out of {old}, i.e. {p}%."
    slipped = f"{100 * abs(new - old) / new:.2f}"  # the change taken out of the new value
    slip = f"The change is {abs(new - old)} out of {new}, about {slipped}%."
    return problem(text, str(p), "percentages", steps, slipped, slip)


# --- algebra -----------------------------------------------------------------------------


def linear_equation(rng: random.Random) -> Problem:
    a, c = rng.sample([n for n in range(-9, 10) if n], 2)
    k, b = rng.randint(-30, 30), rng.randint(-20, 20)
    x = Fraction(k, a - c)  # (a - c)x = k is a whole number, so both sides have integer constants
    d = k + b
    text = f"Solve for $x$: ${poly((a, 'x'), (b, ''))} = {poly((c, 'x'), (d, ''))}$."
    answer = f"x = {fraction(x)}"
    steps = f"Collecting terms, {poly((a - c, 'x'))} = {d - b}, so {answer}."
    slipped = f"x = {fraction(-x)}"  # a sign lost moving a term across
    return problem(
        text, answer, "algebra", steps, slipped, f"Collecting terms, {poly((a - c, 'x'))} = {b - d}, so {slipped}."
    )


def linear_system(rng: random.Random) -> Problem:
    x, y = rng.randint(-9, 9), rng.randint(-9, 9)
    while True:
        a, b, c, d = (rng.choice([n for n in range(-6, 7) if n]) for _ in range(4))
        if a * d - b * c:
            break

    first, second = f"{poly((a, 'x'), (b, 'y'))} = {a * x + b * y}", f"{poly((c, 'x'), (d, 'y'))} = {c * x + d * y}"
    text = f"Solve the system ${first}$ and ${second}$. Give the answer as an ordered pair $(x, y)$."
    steps = f"Eliminating one variable gives x = {x}, y = {y}."
    slip = f"Eliminating one variable gives y = {x}, x = {y}."  # the two values swapped
    return problem(text, f"({x}, {y})", "algebra", steps, f"({y}, {x})", slip)


def quadratic(rng: random.Random) -> Problem:
    r1, r2 = sorted(rng.sample(range(-9, 10), 2))
    k = rng.choice([1, 1, 1, 2, 3])
    b, c = -k * (r1 + r2), k * r1 * r2
    text = f"Find all real solutions of ${poly((k, 'x^2'), (b, 'x'), (c, ''))} = 0$. List them separated by commas."
    factors = f"({poly((1, 'x'), (-r1, ''))})({poly((1, 'x'), (-r2, ''))})"
    steps = f"It factors as {'' if k == 1 else k}{factors} = 0, so x = {r1} or x = {r2}."
    slip = f"It factors as {'' if k == 1 else k}{factors} = 0, so x = {-r2} or x = {-r1}."  # the roots' signs flipped
    return problem(text, f"{r1}, {r2}", "algebra", steps, f"{-r2}, {-r1}", slip)


def evaluate_polynomial(rng: random.Random) -> Problem:
    a, b, c, x = rng.randint(1, 6), rng.randint(-9, 9), rng.randint(-9, 9), rng.randint(-5, 5)
    value = a * x * x + b * x + c
    text = f"If $f(x) = {poly((a, 'x^2'), (b, 'x'), (c, ''))}$, what is $f({x})$?"
    steps = f"f({x}) = {a}({x})^2 + ({b})({x}) + ({c}) = {value}."
    slipped = -a * x * x + b * x + c  # (-x)^2 read as -x^2
    slip = f"f({x}) = -{a}({abs(x)})^2 + ({b})({x}) + ({c}) = {slipped}."
    return problem(text, str(value), "algebra", steps, str(slipped), slip)


TEMPLATES: list[Callable[[random.Random], Problem]] = [
    shopping_total,
    change_due,
    unit_price,
    fraction_arithmetic,
    missing_score,
    distance_rate,
    work_together,
    ages_multiple,
    ages_sum,
    percent_of,
    discount,
    percent_change,
    linear_equation,
    linear_system,
    quadratic,
    evaluate_polynomial,
]


def generate(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` rows, cycling through the templates in a seeded order."""
    rng = random.Random(seed)
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)] if i < len(TEMPLATES) else rng.choice(TEMPLATES)
        p = template(rng)
        solution = f"{p.steps}\n\nThe final answer is $\\boxed{{{p.answer}}}$."
        mistake = f"{p.slip}\n\nThe final answer is $\\boxed{{{p.wrong}}}$."
        yield {
            "responses_create_params": {
                "input": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.text}],
                "metadata": {"emulator_script": script_for(solution, mistake)},
            },
            "expected_answer": p.answer,
            "subject": p.subject,
            "meta": {"source": "generated", "id": f"gen-{seed}-{i:05d}", "template": template.__name__},
        }


def main() -> None:
    write_tasks_command(generate, __doc__, Path(__file__).parent, noun="problems", count=300)


if __name__ == "__main__":
    main()
