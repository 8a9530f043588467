"""Procedural multi-step arithmetic word problems: unlimited fresh tasks with exact answers.

Each template draws its numbers from a seeded `random.Random`, so candidate number k always
produces the same problem. The split is a function of the problem *text*: sha256 of
("arith-split-v1", question) mapped to [0, 1) gives train below 0.8, dev below 0.9, test above.
Two candidates that happen to produce the same text therefore always land in the same split,
and a self-proposed variant that collides with a held-out problem is detected and discarded.

`load(split, limit, seed)` walks candidates seed*STRIDE, seed*STRIDE+1, ... and keeps those of
the requested split, so each seed gives its own stream (fresh train tasks per cycle) and seed 0
gives a fixed dev set. Ids are "arith/<split>/<k>".

reasoning-gym was measured as an alternative (0.1.25: ten extra dependencies, ~345 MB
installed, ~1.6 s import) and rejected: these templates need only the standard library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from agent.errors import ConfigError
from agent.tasks.base import SandboxLike, Verdict, check_split, stable_unit, verify_qa
from memory.models import Task

STRIDE = 10**7
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000  # keeps neighbouring seeds' candidate ranges apart (needs ~10x per item)
_SPLIT_SALT = "arith-split-v1"

_NAMES = (
    "Ana", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Mei", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
)
_ITEMS = (("notebook", "notebooks"), ("pen", "pens"), ("mug", "mugs"), ("scarf", "scarves"),
          ("ticket", "tickets"), ("plant", "plants"), ("book", "books"), ("candle", "candles"))


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    solution: str
    params: dict[str, int | str]


def _shopping(r: random.Random) -> Problem:
    name = r.choice(_NAMES)
    (one_a, many_a), (one_b, many_b) = r.sample(_ITEMS, 2)
    a, pa, b, pb = r.randint(2, 9), r.randint(2, 25), r.randint(2, 9), r.randint(1, 15)
    total = a * pa + b * pb
    bill = next(x for x in (20, 50, 100, 200, 500, 1000) if x > total)
    return Problem(
        f"{name} buys {a} {many_a} at ${pa} each and {b} {many_b} at ${pb} each. "
        f"{name} pays with a ${bill} bill. How many dollars of change does {name} get?",
        bill - total,
        f"{many_a}: {a} * {pa} = {a * pa}. {many_b}: {b} * {pb} = {b * pb}. "
        f"Total {a * pa} + {b * pb} = {total}. Change {bill} - {total} = {bill - total}.",
        {"name": name, "a": a, "pa": pa, "b": b, "pb": pb, "bill": bill},
    )


def _saving(r: random.Random) -> Problem:
    name = r.choice(_NAMES)
    weekly, weeks = r.randint(3, 40), r.randint(3, 20)
    saved = weekly * weeks
    spent = r.randint(1, saved - 1)
    gift = r.randint(0, 50)
    return Problem(
        f"{name} saves ${weekly} every week for {weeks} weeks. Then {name} spends ${spent} on a "
        f"bicycle and receives ${gift} as a gift. How many dollars does {name} have now?",
        saved - spent + gift,
        f"Saved {weekly} * {weeks} = {saved}. After the bicycle {saved} - {spent} = "
        f"{saved - spent}. With the gift {saved - spent} + {gift} = {saved - spent + gift}.",
        {"name": name, "weekly": weekly, "weeks": weeks, "spent": spent, "gift": gift},
    )


def _factory(r: random.Random) -> Problem:
    rate, hours, days = r.randint(5, 60), r.randint(2, 12), r.randint(2, 7)
    made = rate * hours * days
    bad = r.randint(0, made // 10)
    return Problem(
        f"A machine makes {rate} parts per hour. It runs {hours} hours a day for {days} days. "
        f"{bad} of the parts turn out to be defective. How many good parts did it make?",
        made - bad,
        f"Per day {rate} * {hours} = {rate * hours}. In {days} days {rate * hours} * {days} = "
        f"{made}. Good parts {made} - {bad} = {made - bad}.",
        {"rate": rate, "hours": hours, "days": days, "bad": bad},
    )


def _sharing(r: random.Random) -> Problem:
    name = r.choice(_NAMES)
    friends, each, given = r.randint(2, 9), r.randint(5, 30), r.randint(2, 4)
    total = friends * each
    return Problem(
        f"{name} shares {total} stickers equally among {friends} friends. Each friend then gives "
        f"{given} stickers to a younger sibling. How many stickers does each friend have left?",
        each - given,
        f"Each friend gets {total} / {friends} = {each}. After giving {given} away: "
        f"{each} - {given} = {each - given}.",
        {"name": name, "friends": friends, "each": each, "given": given},
    )


def _fractions(r: random.Random) -> Problem:
    denominator = r.choice((3, 4, 5, 6, 8, 10))
    numerator = r.randint(1, denominator - 1)
    students = denominator * 2 * r.randint(2, 8)
    soccer = students * numerator // denominator
    # students is a multiple of 2 * denominator, so both soccer and the rest are whole and even.
    rest = students - soccer
    chess = rest // 2
    return Problem(
        f"A school has {students} students. {numerator}/{denominator} of them play soccer, "
        f"and half of the remaining students play chess. How many students play neither?",
        rest - chess,
        f"Soccer {students} * {numerator}/{denominator} = {soccer}. Remaining {students} - "
        f"{soccer} = {rest}. Chess {rest} / 2 = {chess}. Neither {rest} - {chess} = {rest - chess}.",
        {"students": students, "numerator": numerator, "denominator": denominator},
    )


def _discount(r: random.Random) -> Problem:
    one, many = r.choice(_ITEMS)
    price, pct, count = 20 * r.randint(1, 15), 5 * r.randint(1, 15), r.randint(2, 6)
    off = price * pct // 100
    return Problem(
        f"A {one} costs ${price}. During a sale every {one} is {pct}% off. "
        f"How many dollars do {count} {many} cost during the sale?",
        (price - off) * count,
        f"Discount {price} * {pct}/100 = {off}. Sale price {price} - {off} = {price - off}. "
        f"For {count}: {price - off} * {count} = {(price - off) * count}.",
        {"item": one, "price": price, "pct": pct, "count": count},
    )


def _ages(r: random.Random) -> Problem:
    name, other = r.sample(_NAMES, 2)
    age, extra, years = r.randint(4, 30), r.randint(1, 10), r.randint(1, 15)
    other_age = 2 * age + extra
    total = age + other_age + 2 * years
    return Problem(
        f"{name} is {age} years old. {other} is {extra} years older than twice {name}'s age. "
        f"What will the sum of their ages be in {years} years?",
        total,
        f"{other} is 2 * {age} + {extra} = {other_age}. Now the sum is {age} + {other_age} = "
        f"{age + other_age}. In {years} years each is {years} older: {age + other_age} + "
        f"2 * {years} = {total}.",
        {"name": name, "other": other, "age": age, "extra": extra, "years": years},
    )


def _journey(r: random.Random) -> Problem:
    v1, t1, v2, t2 = r.randint(30, 120), r.randint(1, 6), r.randint(20, 100), r.randint(1, 6)
    return Problem(
        f"A train travels at {v1} km per hour for {t1} hours, then slows to {v2} km per hour for "
        f"another {t2} hours. How many kilometres does it travel in total?",
        v1 * t1 + v2 * t2,
        f"First part {v1} * {t1} = {v1 * t1}. Second part {v2} * {t2} = {v2 * t2}. "
        f"Total {v1 * t1} + {v2 * t2} = {v1 * t1 + v2 * t2}.",
        {"v1": v1, "t1": t1, "v2": v2, "t2": t2},
    )


def _bakery(r: random.Random) -> Problem:
    trays, per_tray, factor = r.randint(3, 12), r.randint(6, 24), r.randint(2, 3)
    baked = trays * per_tray
    morning = r.randint(1, baked // (factor + 1))
    afternoon = factor * morning
    return Problem(
        f"A bakery bakes {trays} trays with {per_tray} muffins on each tray. It sells {morning} "
        f"muffins in the morning and {factor} times as many in the afternoon. "
        f"How many muffins are left at the end of the day?",
        baked - morning - afternoon,
        f"Baked {trays} * {per_tray} = {baked}. Afternoon {factor} * {morning} = {afternoon}. "
        f"Left {baked} - {morning} - {afternoon} = {baked - morning - afternoon}.",
        {"trays": trays, "per_tray": per_tray, "morning": morning, "factor": factor},
    )


def _fence(r: random.Random) -> Problem:
    length, width, cost = r.randint(5, 60), r.randint(3, 40), r.randint(2, 15)
    perimeter = 2 * (length + width)
    return Problem(
        f"A rectangular garden is {length} m long and {width} m wide. Fencing costs ${cost} per "
        f"metre. How many dollars does it cost to fence all four sides?",
        perimeter * cost,
        f"Perimeter 2 * ({length} + {width}) = {perimeter}. Cost {perimeter} * {cost} = "
        f"{perimeter * cost}.",
        {"length": length, "width": width, "cost": cost},
    )


TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    "shopping": _shopping,
    "saving": _saving,
    "factory": _factory,
    "sharing": _sharing,
    "fractions": _fractions,
    "discount": _discount,
    "ages": _ages,
    "journey": _journey,
    "bakery": _bakery,
    "fence": _fence,
}


def split_of(question: str) -> str:
    u = stable_unit(_SPLIT_SALT, question)
    return "train" if u < 0.8 else "dev" if u < 0.9 else "test"


def candidate(k: int) -> tuple[str, Problem]:
    """Problem number k: a template and its numbers, both drawn from Random(k)."""
    rng = random.Random(f"arith:{k}")
    template = rng.choice(sorted(TEMPLATES))
    return template, TEMPLATES[template](rng)


def _task(task_id: str, split: str, template: str, problem: Problem, **extra) -> Task:
    return Task(
        id=task_id,
        suite="arith",
        split=split,
        kind="qa",
        question=problem.question,
        answer=str(problem.answer),
        meta={"template": template, "params": problem.params, "solution": problem.solution},
        **extra,
    )


class ArithSuite:
    name = "arith"

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Task]:
        check_split(split)
        want = DEFAULT_LIMIT if limit is None else limit
        if not 0 <= want <= MAX_LIMIT:
            raise ConfigError(f"arith limit must be between 0 and {MAX_LIMIT}, got {want}")
        if seed < 0:
            raise ConfigError(f"arith seed must be >= 0, got {seed}")
        tasks: list[Task] = []
        seen: set[str] = set()
        k = seed * STRIDE
        while len(tasks) < want:
            template, problem = candidate(k)
            if split_of(problem.question) == split and problem.question not in seen:
                seen.add(problem.question)
                tasks.append(_task(f"arith/{split}/{k}", split, template, problem))
            k += 1
        return tasks

    def verify(self, task: Task, answer: str, *, sandbox: SandboxLike | None = None) -> Verdict:
        return verify_qa(task, answer)

    def propose_variation(self, task: Task, rng: random.Random, attempts: int = 20) -> Task | None:
        template = (task.meta or {}).get("template")
        # Anything derived from a held-out task must stay out of training.
        if task.split != "train" or template not in TEMPLATES:
            return None
        for _ in range(attempts):
            problem = TEMPLATES[template](random.Random(rng.getrandbits(64)))
            if problem.question == task.question or split_of(problem.question) != "train":
                continue
            native = f"{stable_unit('arith-variant', problem.question):.12f}"[2:]
            return _task(
                f"arith/train/v{native}",
                "train",
                template,
                problem,
                origin="self-proposed",
                parent_task_id=task.id,
            )
        return None
