"""storybot as a host runs it, a real ``storybot run`` process, with members on the local Discord.

Each run starts the emulator in this process, writes a config, and launches the bot with
``python -m tests.discord_emulator.launch`` (the unmodified ``storybot`` command with discord.py
pointed at the emulator). Members then use it through real sockets while the run stops it
(SIGTERM, SIGINT), kills it (SIGKILL, then a restart) or loads it, and reads the outcome where a
member and a host would: the messages in Discord and the rows in the database file.
Used by ``python -m bench.reliability`` and, a run of each, by ``tests/reliability/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.cogs.story import WRITING
from bot.render import safe
from tests.discord_emulator import DiscordEmulator, Interaction, Member, TextChannel

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "reliability-token"
START_TIMEOUT_S = 180.0


@dataclass
class World:
    """One server with ``channels`` channels and ``members`` members spread over them."""

    emu: DiscordEmulator
    guild_id: int
    channels: list[TextChannel]
    members: list[Member]

    def channel_of(self, index: int) -> TextChannel:
        return self.channels[index % len(self.channels)]


def make_world(emu: DiscordEmulator, channels: int, members: int) -> World:
    guild = emu.add_guild("Reliability")
    return World(
        emu,
        guild.id,
        [guild.add_text_channel(f"story-{i}") for i in range(channels)],
        [guild.add_member(f"member{i}") for i in range(members)],
    )


def write_config(folder: Path, world: World, model_dir: Path, **values: dict) -> Path:
    """A TOML config for the world; ``values`` maps a section to the keys to set in it."""
    sections: dict[str, dict] = {
        "discord": {"dev_guild_ids": [world.guild_id]},
        "model": {"name": str(model_dir), "device": "cpu", "batch_wait_ms": 5},
        "database": {"path": str(folder / "storybot.db")},
        "generation": {"quality_guard": False},
    }
    for section, keys in values.items():
        sections.setdefault(section, {}).update(keys)
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    path = folder / "storybot.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


class LaunchedBot:
    """``storybot --config CONFIG run`` in a child process, pointed at the emulator."""

    def __init__(self, emu: DiscordEmulator, config: Path, step_delay: float = 0.0) -> None:
        self.emu, self.config, self.step_delay = emu, config, step_delay
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        """Launch it and wait until it is connected and ready."""
        env = dict(
            os.environ,
            DISCORD_TOKEN=TOKEN,
            HF_HUB_OFFLINE="1",
            OMP_NUM_THREADS="1",  # the bot, the members and the emulator share the machine
            PYTHONPATH=str(ROOT),
        )
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.discord_emulator.launch", self.emu.url,
            "--step-delay", str(self.step_delay), "--", "--config", str(self.config), "run",
            cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read_log())
        await self.wait_log("connected as", START_TIMEOUT_S)

    async def _read_log(self) -> None:
        async for line in self.process.stderr:
            self.log.append(line.decode(errors="replace").rstrip())

    async def wait_log(self, text: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.log):
                if self.process.returncode is not None:
                    raise RuntimeError("the bot exited:\n" + "\n".join(self.log[-30:]))
                await asyncio.sleep(0.05)

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Its exit status (it is killed past ``timeout``: then the status is -9)."""
        try:
            async with asyncio.timeout(timeout):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader
        return self.process.returncode

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.send(signal.SIGTERM)
            await self.wait(60)


@contextlib.asynccontextmanager
async def launched(emu: DiscordEmulator, config: Path, step_delay: float = 0.0):
    bot = LaunchedBot(emu, config, step_delay)
    try:
        await bot.start()
        yield bot
    finally:
        await bot.stop()


# -- what members see, and what the database kept ----------------------------------------------------


def shown(interaction: Interaction) -> str | None:
    """The member's finished answer (their part, or a line for them only), or None if they wait."""
    messages = [m for m in interaction.messages if not m.deleted]
    if not messages and interaction.initial is not None and interaction.initial.type == 4:
        return interaction.initial.data.get("content")
    finished = [m for m in messages if not m.loading and not m.content.endswith(WRITING)]
    return finished[-1].content if finished and len(finished) == len(messages) else None


def settled(interaction: Interaction) -> bool:
    """Answered, or refused by Discord (acknowledged too late)."""
    return shown(interaction) is not None or interaction.failure is not None


def member_lines(database: Path) -> list[str]:
    """Every member line in the file (archived stories too)."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [r[0] for r in db.execute("SELECT text FROM turns WHERE kind = 'member'")]


def contiguous(database: Path) -> bool:
    """Every story's positions are 0, 1, 2, … without a gap."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT story_id, position FROM turns ORDER BY story_id, position")
        by_story: dict[int, list[int]] = {}
        for story, position in rows:
            by_story.setdefault(story, []).append(position)
    return all(p == list(range(len(p))) for p in by_story.values())


def integrity(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@dataclass
class Outcome:
    """What one run left: every member's answer, held against the database."""

    requests: int = 0
    answered: int = 0
    parts_shown: int = 0
    told_saved: int = 0  # answers that say the member's line is saved (the part is not)
    lost: int = 0  # lines shown or said to be saved that the database lacks
    misled: int = 0  # lines stored though the answer did not say so (a retry would repeat them)
    duplicated: int = 0
    contiguous: bool = True
    integrity: str = "ok"
    waiting: list[str] = field(default_factory=list)


def judge(requests: list[tuple[Interaction, str]], database: Path) -> Outcome:
    """``requests`` pairs each interaction with the member line it carried."""
    stored = member_lines(database)
    outcome = Outcome(requests=len(requests))
    for interaction, line in requests:
        answer, count = shown(interaction), stored.count(line)
        outcome.duplicated += count > 1
        if answer is None:
            outcome.waiting.append(f"{interaction.label} by {interaction.member.name}")
            continue
        outcome.answered += 1
        public = not interaction.messages[0].ephemeral if interaction.messages else False
        said_saved = "is saved" in answer
        outcome.told_saved += said_saved
        shows_line = safe(line) in answer  # as Discord shows it: escaped
        outcome.parts_shown += public and shows_line and not said_saved
        claimed = said_saved or (public and shows_line)
        outcome.lost += claimed and count == 0
        outcome.misled += not claimed and count > 0
    outcome.contiguous = contiguous(database)
    outcome.integrity = integrity(database)
    return outcome


async def start_stories(world: World) -> None:
    """A story in every channel, so that members can /continue."""
    writes = [
        await world.members[i % len(world.members)].slash(channel, "write", prompt=f"Tale {i}")
        for i, channel in enumerate(world.channels)
    ]
    for interaction in writes:
        await world.emu.wait_for(lambda i=interaction: shown(i) is not None, 120)


async def in_flight(world: World, tag: str) -> list[tuple[Interaction, str]]:
    """Every member sends ``/continue`` with a line of their own; returns once all are deferred."""
    requests = []
    for i, member in enumerate(world.members):
        line = f"{member.name} {tag}."
        requests.append((await member.slash(world.channel_of(i), "continue", text=line), line))
    for interaction, _ in requests:
        await interaction.response(10)
    await asyncio.sleep(0.5)  # the first parts are being written, the rest wait their turn
    return requests


# -- the runs ------------------------------------------------------------------------------------


@dataclass
class StopFigures:
    signal: str
    exit_status: int
    exit_s: float
    drain_s: float
    late_told_restarting: bool
    outcome: Outcome
    log: list[str] = field(default_factory=list, repr=False)


async def stop_run(
    folder: Path,
    model_dir: Path,
    sig: int,
    *,
    drain_s: float,
    step_delay: float = 0.05,
    max_new_tokens: int = 60,
    channels: int = 3,
    members: int = 6,
) -> StopFigures:
    """Members wait for parts when the host stops the bot with ``sig``."""
    async with DiscordEmulator() as emu:
        world = make_world(emu, channels, members)
        config = write_config(
            folder, world, model_dir,
            discord={"drain_s": drain_s},
            generation={"max_new_tokens": max_new_tokens},
        )  # fmt: skip
        async with launched(emu, config, step_delay) as bot:
            await start_stories(world)
            requests = await in_flight(world, "before the stop")
            bot.send(sig)
            stopped_at = time.monotonic()
            await asyncio.sleep(0.3)
            late = await world.members[0].slash(world.channels[0], "story show")
            status = await bot.wait(drain_s + 60)
            exit_s = time.monotonic() - stopped_at
        late_told = "restarting" in (shown(late) or "")
        outcome = judge(requests, folder / "storybot.db")
        await emu.close(check=False)
        emu.pop_violations()  # what a run counts is in its figures
    return StopFigures(
        signal.Signals(sig).name, status, exit_s, drain_s, late_told, outcome, bot.log
    )


@dataclass
class CrashFigures:
    restart_s: float
    told_after_restart: int
    outcome: Outcome


async def crash_run(
    folder: Path,
    model_dir: Path,
    *,
    step_delay: float = 0.05,
    max_new_tokens: int = 60,
    channels: int = 3,
    members: int = 6,
) -> CrashFigures:
    """Members wait for parts when the bot is killed (SIGKILL); then the host starts it again."""
    async with DiscordEmulator() as emu:
        world = make_world(emu, channels, members)
        config = write_config(
            folder, world, model_dir, generation={"max_new_tokens": max_new_tokens}
        )
        async with launched(emu, config, step_delay) as bot:
            await start_stories(world)
            requests = await in_flight(world, "before the crash")
            bot.send(signal.SIGKILL)
            await bot.wait(30)
        restarted_at = time.monotonic()
        async with launched(emu, config) as bot:
            with contextlib.suppress(TimeoutError):
                await emu.wait_for(lambda: all(shown(i) for i, _ in requests), 60)
            restart_s = time.monotonic() - restarted_at
        told = sum("I restarted" in (shown(i) or "") for i, _ in requests)
        outcome = judge(requests, folder / "storybot.db")
        await emu.close(check=False)
        emu.pop_violations()
    return CrashFigures(restart_s, told, outcome)


@dataclass
class LoadFigures:
    members: int
    requests: int
    channels: int
    seconds: float
    ack_max_s: float
    ack_late: int  # acknowledged after Discord's 3 s
    answer_p50_s: float
    answer_p95_s: float
    refused: int
    outcome: Outcome


async def load_run(
    folder: Path,
    model_dir: Path,
    *,
    members: int = 50,
    requests: int = 20,
    channels: int = 10,
    max_new_tokens: int = 20,
) -> LoadFigures:
    """``members`` members each send ``requests`` /continue, one after another, all at once."""
    async with DiscordEmulator() as emu:
        world = make_world(emu, channels, members)
        config = write_config(
            folder, world, model_dir,
            generation={"max_new_tokens": max_new_tokens, "user_rate": 600},
            caps={"max_user_rate": 600, "max_guild_rate": 6000},
        )  # fmt: skip
        sent: list[tuple[Interaction, str]] = []
        answer_s: list[float] = []

        async def member_writes(index: int) -> None:
            member = world.members[index]
            for n in range(requests):
                line = f"{member.name} line {n}."
                started = time.monotonic()
                interaction = await member.slash(world.channel_of(index), "continue", text=line)
                sent.append((interaction, line))
                await emu.wait_for(lambda i=interaction: settled(i), 300)
                answer_s.append(time.monotonic() - started)

        async with launched(emu, config):
            await start_stories(world)
            started = time.monotonic()
            await asyncio.gather(*(member_writes(i) for i in range(members)))
            seconds = time.monotonic() - started
        acks = [i.initial.time - i.dispatched_at for i, _ in sent if i.initial is not None]
        late = sum(1 for i, _ in sent if i.initial is None)  # past 3 s Discord drops them
        outcome = judge(sent, folder / "storybot.db")
        await emu.close(check=False)
        emu.pop_violations()
    answer_s.sort()
    return LoadFigures(
        members=members,
        requests=len(sent),
        channels=channels,
        seconds=seconds,
        ack_max_s=max(acks, default=0.0),
        ack_late=late,
        answer_p50_s=statistics.median(answer_s),
        answer_p95_s=answer_s[int(0.95 * (len(answer_s) - 1))],
        refused=sum(1 for i, _ in sent if i.messages and i.messages[-1].ephemeral),
        outcome=outcome,
    )


@contextlib.asynccontextmanager
async def scratch() -> AsyncIterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="storybot-reliability-") as folder:
        yield Path(folder)
