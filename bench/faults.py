"""The fault matrix: storybot with members on the local Discord while something breaks underneath.

Each fault is injected while members wait for their parts: the model's forward pass fails (once,
or until it is mended), runs out of memory inside the forward pass, the engine's worker dies,
another process locks the database, the database turns read-only, or the disk is full. A fault
is *survived* when every member gets an answer, the bot works again once the fault is gone, and
no member was misled: every line shown or said to be saved is in the database, and every line in
the database was shown or said to be saved (so a retry never writes it twice).

The bot runs in this process (the faults reach into it), except for the full disk: a file size
limit of 0 on a ``storybot run`` process makes every write to its database fail, as a full disk
does, without touching anything else on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.discord_runs import (
    World,
    judge,
    launched,
    make_world,
    settled,
    shown,
    start_stories,
    write_config,
)
from bot.app import create_bot
from bot.config import load_config
from tests.discord_emulator import DiscordEmulator, Interaction, running_bot

TIMEOUT_S = 60.0


@dataclass
class FaultResult:
    fault: str
    survived: bool  # every member answered, and the bot works again afterwards
    truthful: bool  # nothing lost, nobody misled
    answers: list[str]  # what the members saw, in short
    detail: str = ""

    def line(self) -> str:
        verdict = "survived" if self.survived else "NOT SURVIVED"
        truth = "every member told the truth" if self.truthful else "MISLED A MEMBER"
        seen = "; ".join(sorted(set(self.answers)))
        return f"fault {self.fault}: {verdict}, {truth} ({seen}){self.detail}"


def gist(interaction: Interaction) -> str:
    """What a member saw, in a few words."""
    answer = shown(interaction)
    if answer is None:
        return "no answer"
    ephemeral = interaction.messages[-1].ephemeral if interaction.messages else True
    if not ephemeral:
        return "their part" if "is saved" not in answer else "their part, saved"
    for sign in ("is saved", "busy", "couldn't reach", "went wrong", "restarting", "try again"):
        if sign in answer:
            return {
                "is saved": "an error, and that their line is saved",
                "busy": "the archive is busy",
                "couldn't reach": "the archive cannot be reached",
                "went wrong": "the generic apology",
            }.get(sign, sign)
    return answer[:60]


async def requests(
    world: World, tag: str, lines: bool = True
) -> tuple[list[tuple[Interaction, str]], float]:
    """One /continue per member (each in its own channel), with a line unless ``lines`` is off
    (then every other member adds none). Returns them and the slowest answer's time."""
    sent, started = [], time.monotonic()
    for i, member in enumerate(world.members):
        line = f"{member.name} {tag}."
        options = {"text": line} if lines or i % 2 == 0 else {}
        sent.append((await member.slash(world.channel_of(i), "continue", **options), line))
    for interaction, _ in sent:
        await world.emu.wait_for(lambda i=interaction: settled(i), TIMEOUT_S)
    return sent, time.monotonic() - started


async def works_again(world: World) -> bool:
    """Once the fault is mended, a member's /continue gets their part."""
    interaction = await world.members[0].slash(world.channels[0], "continue", text="And after.")
    await world.emu.wait_for(lambda: settled(interaction), TIMEOUT_S)
    return gist(interaction) == "their part"


@contextlib.asynccontextmanager
async def bot_in_process(folder: Path, model_dir: Path, members: int, **values):
    """The emulator, a world of ``members`` members in as many channels, and the real bot."""
    async with DiscordEmulator() as emu:
        world = make_world(emu, members, members)
        config = load_config(write_config(folder, world, model_dir, **values))
        async with running_bot(emu, create_bot(config)) as bot:
            await start_stories(world)
            yield world, bot
        await emu.close(check=False)
        emu.pop_violations()


@contextlib.asynccontextmanager
async def in_forward(bot, fail: Callable[[torch.Tensor, int], BaseException | None]):
    """Raise ``fail(hidden states, strikes so far)`` (when not None) inside the model's last
    block while the block runs; yields the list of strikes (the batch size of each)."""
    struck: list[int] = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        error = fail(hidden, len(struck))
        if error is not None:
            struck.append(hidden.shape[0])
            raise error

    last_block = bot.services.engine.loaded.model.transformer.h[-1]
    handle = last_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield struck
    finally:
        handle.remove()


def decoding_together(hidden: torch.Tensor) -> bool:
    """A decoding step (one new position) of more than one row."""
    return hidden.shape[1] == 1 and hidden.shape[0] > 1


Fault = Callable[[object], contextlib.AbstractAsyncContextManager[list]]


async def fault_case(
    name: str,
    folder: Path,
    model_dir: Path,
    fault: Fault,
    *,
    members: int = 3,
    lines: bool = True,
    restarts: int = 0,
) -> FaultResult:
    """Start the bot; with ``fault`` in force (it counts how often it struck), let every member
    ask; once it is mended, ask once more."""
    values = {"generation": {"max_new_tokens": 12}}
    async with bot_in_process(folder, model_dir, members, **values) as (world, bot):
        async with fault(bot) as struck:
            sent, slowest = await requests(world, name.split()[0], lines)
        again = await works_again(world)
        stats = bot.services.engine.stats()
    outcome = judge(sent, folder / "storybot.db")
    return FaultResult(
        name,
        survived=bool(struck)
        and again
        and outcome.answered == len(sent)
        and stats.restarts == restarts,
        truthful=outcome.lost == 0 and outcome.misled == 0 and outcome.duplicated == 0,
        answers=[gist(i) for i, _ in sent],
        detail=(
            f" struck {len(struck)} times, slowest answer {slowest:.1f} s,"
            f" worker restarts {stats.restarts}, batch cap after {stats.batch_cap}"
        ),
    )


# -- the faults --------------------------------------------------------------------------------------


def model_error_once(bot):
    """Three decoding steps of more than one row fail; each row's step alone works."""
    return in_forward(
        bot,
        lambda hidden, n: (
            RuntimeError("injected model fault") if decoding_together(hidden) and n < 3 else None
        ),
    )


def model_error_until_mended(bot):
    return in_forward(bot, lambda hidden, n: RuntimeError("injected model fault"))


def out_of_memory(bot):
    """Any decoding step of more than one row runs out of memory inside the forward pass."""
    return in_forward(
        bot,
        lambda hidden, n: (
            torch.OutOfMemoryError("CUDA out of memory (injected inside forward)")
            if decoding_together(hidden)
            else None
        ),
    )


@contextlib.asynccontextmanager
async def worker_crash(bot):
    """The worker thread dies with an error outside any step (in choosing a token)."""
    engine, struck = bot.services.engine, []
    real = engine._chooser

    class Crashing:
        def choose(self, logits, rows):
            engine._chooser = real
            struck.append(len(rows))
            raise RuntimeError("injected worker crash")

    engine._chooser = Crashing()
    try:
        yield struck
    finally:
        engine._chooser = real


@contextlib.asynccontextmanager
async def locked_database(bot):
    """Another process takes the write lock (from a thread: the bot shares this event loop)."""
    other = sqlite3.connect(
        bot.services.store.path, isolation_level=None, timeout=10, check_same_thread=False
    )
    await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
    try:
        yield ["locked"]
    finally:
        await asyncio.to_thread(other.execute, "ROLLBACK")
        other.close()


@contextlib.asynccontextmanager
async def read_only_database(bot):
    writer = bot.services.store._db
    await writer.execute("PRAGMA query_only = ON")  # SQLite answers as for a read-only file
    try:
        yield ["read-only"]
    finally:
        await writer.execute("PRAGMA query_only = OFF")


async def full_disk(folder: Path, model_dir: Path) -> FaultResult:
    """A file size limit of 0 on the bot's process: every write to its database fails."""
    async with DiscordEmulator() as emu:
        world = make_world(emu, 2, 2)
        config = write_config(folder, world, model_dir, generation={"max_new_tokens": 12})
        async with launched(emu, config) as bot:
            await start_stories(world)
            pid = bot.process.pid
            limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
            try:
                sent, slowest = await requests(world, "full")
            finally:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
            again = await works_again(world)
        await emu.close(check=False)
        emu.pop_violations()
    outcome = judge(sent, folder / "storybot.db")
    return FaultResult(
        "disk full",
        survived=again and outcome.answered == len(sent),
        truthful=outcome.lost == 0 and outcome.misled == 0 and outcome.duplicated == 0,
        answers=[gist(i) for i, _ in sent],
        detail=f" slowest answer {slowest:.1f} s",
    )


CASES: dict[str, tuple[Fault, dict]] = {
    "model error in one step": (model_error_once, {}),
    "model error until mended": (model_error_until_mended, {"lines": False}),
    "out of memory inside forward": (out_of_memory, {"members": 4}),
    "worker crash": (worker_crash, {"restarts": 1}),
    "database locked by another process": (locked_database, {}),
    "database read-only": (read_only_database, {}),
}


async def run_faults(folder: Path, model_dir: Path, only: list[str] | None = None):
    """Every fault (or those named in ``only``), one after another; yields their results."""
    for n, (name, (fault, options)) in enumerate(CASES.items()):
        if only is None or name in only:
            case = folder / f"case{n}"
            case.mkdir()
            yield await fault_case(name, case, model_dir, fault, **options)
    if only is None or "disk full" in only:
        case = folder / "full"
        case.mkdir()
        yield await full_disk(case, model_dir)
