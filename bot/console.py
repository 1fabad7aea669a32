"""A terminal REPL over the same StoryService: try the whole pipeline without Discord.

Commands mirror the Discord ones (``/write``, ``/continue``, ``/story``, ``/settings …``) and act
on one local channel of one local server, in the configured SQLite file, so stories persist
between runs. The person at the terminal is the host, so they may change settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.errors import StoryError
from bot.explain import marked, sections
from bot.picture import confidence_png
from bot.service import Actor, StoryService, Written
from bot.story import MODES

CONSOLE_ACTOR = Actor(guild_id=1, channel_id=1, user_id=1, is_moderator=True, name="you")
WHO = {"opening": "opening", "member": "you", "model": "model"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

SETTINGS_USAGE = (
    "Usage: /settings show | set <key> <value> [channel] | reset <key> [channel]"
    " | banned add|remove|list [words] | history [key]"
)
HELP = f"""Commands:
  /write [mode=<mode>] <prompt>         start a new story (modes: {", ".join(MODES)})
  /continue [text]                      add your line (optional) and let the model write on
  /story                                show the story so far
  /explain [N]                          why the model wrote its part N (default: the newest);
                                        unsure words are marked ⟦…⟧, a picture is saved as PNG
  /retry                                write the newest part again (earlier versions are kept)
  /alt N                                make version N of the newest part the story's
  /undo, /redo                          take back the newest turn, or put it back
  /edit <text>                          replace the newest turn with your text (a new version)
  /memory [text | clear]                what must stay true, pinned before the story
  /note [text | clear]                  the author's note, a few turns before the end
  /list [page], /resume <id>, /end      the channel's stories; resume one; finish this one
  /export <path> [markdown|text|json]   save the whole story to a file
  /settings show                        the settings in force and where they come from
  /settings set <key> <value> [channel] change a setting for the server (or this channel)
  /settings reset <key> [channel]       go back to the default
  /settings banned add|remove <words>   ban words and phrases (commas between), or allow them
  /settings banned list                 the banned words
  /settings history [key]               who changed what, newest first
  /stats [hour|day]                     parts written and refused lately
  /help                                 this text
  /quit                                 leave (the story stays in the database)"""


class Console:
    """Reads commands, runs them through the service, prints the answers."""

    def __init__(
        self,
        service: StoryService,
        out: TextIO = sys.stdout,
        actor: Actor = CONSOLE_ACTOR,
        pictures: Path = Path(),
    ) -> None:
        self.service = service
        self.out = out
        self.actor = actor
        self.pictures = pictures  # where /explain saves its PNGs
        self._commands: dict[str, Callable[[str], object]] = {
            "/write": self.write,
            "/continue": self.continue_,
            "/story": self.story,
            "/explain": self.explain,
            "/retry": self.retry,
            "/alt": self.alt,
            "/undo": self.undo,
            "/redo": self.redo,
            "/edit": self.edit,
            "/memory": self.memory,
            "/note": self.note,
            "/list": self.list_,
            "/resume": self.resume,
            "/end": self.end,
            "/export": self.export,
            "/settings": self.settings,
            "/stats": self.stats,
            "/help": self.help,
        }

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def run(self, lines) -> None:
        """Handle lines until ``/quit`` or the end of input. ``lines`` is an async iterator."""
        self.say("storybot console — /help for commands, /quit to leave.")
        async for raw in lines:
            line = raw.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            await self.handle(line)

    async def handle(self, line: str) -> None:
        name, _, rest = line.partition(" ")
        command = self._commands.get(name)
        if command is None:
            self.say(f"Unknown command {name!r}. Type /help for the list.")
            return
        try:
            await command(rest.strip())
        except StoryError as error:
            self.say(f"! {error.user_message}")

    async def help(self, _: str) -> None:
        self.say(HELP)

    async def write(self, rest: str) -> None:
        mode = None
        if rest.startswith("mode="):
            first, _, rest = rest.partition(" ")
            mode = first.removeprefix("mode=")
        async with spinning(self.out):
            written = await self.service.write(self.actor, rest, mode)
        self._show(written)

    async def continue_(self, rest: str) -> None:
        async with spinning(self.out):
            written = await self.service.continue_(self.actor, rest or None)
        self._show(written)

    async def story(self, _: str) -> None:
        view = await self.service.show(self.actor)
        self.say(f"[{view.story.mode}: {view.story.title}]")
        for turn in view.turns:
            self.say(f"[{WHO[turn.kind]}] {turn.text}")

    async def explain(self, rest: str) -> None:
        if rest and not rest.isdigit():
            self.say("Usage: /explain [N]  (N: which of the model's parts, from 1)")
            return
        explained = await self.service.explain(self.actor, part=int(rest) if rest else None)
        self.say(f"Part {explained.number}: {marked(explained.notes)}")
        for heading, text in sections(explained.explanation, explained.record):
            self.say(f"{heading}: {text}")
        png = await asyncio.to_thread(confidence_png, explained.notes, explained.title)
        path = self.pictures / f"storybot-story{explained.story.id}-part{explained.number}.png"
        try:
            path.write_bytes(png)
        except OSError as error:
            self.say(f"! Could not save the picture to {path}: {error.strerror}")
        else:
            self.say(f"Picture: {path}")

    async def retry(self, _: str) -> None:
        async with spinning(self.out):
            written = await self.service.retry(self.actor)
        part = written.model_turn
        self.say(f"[model, version {part.version} of {part.versions}] {part.text}")

    async def alt(self, rest: str) -> None:
        if not rest.isdigit():
            self.say("Usage: /alt N  (which version of the newest part)")
            return
        part = await self.service.choose_version(self.actor, number=int(rest))
        self.say(f"[model, version {part.version} of {part.versions}] {part.text}")

    async def undo(self, _: str) -> None:
        turn = await self.service.undo(self.actor)
        self.say(f"(undone: [{WHO[turn.kind]}] {turn.text[:60]}; /redo puts it back)")

    async def redo(self, _: str) -> None:
        turn = await self.service.redo(self.actor)
        self.say(f"[{WHO[turn.kind]}] {turn.text}")

    async def edit(self, rest: str) -> None:
        turn = await self.service.edit(self.actor, rest)
        self.say(f"[{WHO[turn.kind]}, version {turn.version}] {turn.text}")

    async def memory(self, rest: str) -> None:
        story = await self.service.memory(self.actor, rest or None)
        self.say(f"memory: {story.memory or '(none)'}")

    async def note(self, rest: str) -> None:
        story = await self.service.note(self.actor, rest or None)
        self.say(f"author's note: {story.note or '(none)'}")

    async def list_(self, rest: str) -> None:
        page = await self.service.stories(self.actor, int(rest) if rest.isdigit() else 1)
        for story in page.stories:
            state = "active" if story.active else "ended" if story.ended_at else "archived"
            self.say(f"  {story.id}: {story.title[:60]} ({story.mode}, {state})")
        self.say(f"page {page.page} of {page.pages}" if page.stories else "(no stories yet)")

    async def resume(self, rest: str) -> None:
        if not rest.isdigit():
            self.say("Usage: /resume <id>  (/list shows the ids)")
            return
        story, archived = await self.service.resume(self.actor, int(rest))
        self.say(
            f"resumed {story.title!r}" + (f"; archived {archived.title!r}" if archived else "")
        )

    async def end(self, _: str) -> None:
        story = await self.service.end(self.actor)
        self.say(f"ended {story.title!r}; /resume {story.id} takes it up again")

    async def export(self, rest: str) -> None:
        words = rest.split()
        if not 1 <= len(words) <= 2:
            self.say("Usage: /export <path> [markdown|text|json]")
            return
        exported = await self.service.export(self.actor, *words[1:])
        path = Path(words[0]).expanduser()
        try:
            path.write_bytes(exported.data)
        except OSError as error:
            self.say(f"! Could not write {path}: {error.strerror}")
        else:
            self.say(f"wrote {path} ({len(exported.data)} bytes)")

    async def settings(self, rest: str) -> None:
        try:
            words = shlex.split(rest)
        except ValueError as error:
            self.say(f"! {error}")
            return
        action, args = (words[0], words[1:]) if words else ("show", [])
        scope = "channel" if args and args[-1] == "channel" else "server"
        if scope == "channel":
            args = args[:-1]
        if action == "show" and not args:
            view = await self.service.settings(self.actor)
            for key, spec in view.specs.items():
                value, origin = view.resolved.values[key], view.resolved.origins[key]
                self.say(f"  {key} = {spec.show(value)} ({origin})  {spec.range_text()}")
            self.say(f"  banned words: {', '.join(view.banned) or 'none'}")
        elif action == "set" and len(args) == 2:
            change = await self.service.set_setting(self.actor, args[0], args[1], scope)
            self.say(f"{change.key} ({scope}) = {change.spec.show(change.new)}")
        elif action == "reset" and len(args) == 1:
            change = await self.service.set_setting(self.actor, args[0], None, scope)
            self.say(f"{change.key} ({scope}) reset; now {change.spec.show(change.effective)}")
        elif action == "banned" and args and args[0] in ("add", "remove") and len(args) > 1:
            move = self.service.ban if args[0] == "add" else self.service.unban
            change = await move(self.actor, " ".join(args[1:]))
            self.say(f"banned words: {', '.join(change.banned) or 'none'}")
        elif action == "banned" and args == ["list"]:
            view = await self.service.settings(self.actor)
            self.say(f"banned words: {', '.join(view.banned) or 'none'}")
        elif action == "history" and len(args) <= 1:
            page = await self.service.history(self.actor, args[0] if args else None)
            for entry in page.entries:
                self.say(
                    f"  {entry.changed_at[:19]} {entry.key}: {entry.old_value!r} → "
                    f"{entry.new_value!r}"
                )
        else:
            self.say(SETTINGS_USAGE)

    async def stats(self, rest: str) -> None:
        stats = await self.service.stats(self.actor, rest or "hour")
        refused = ", ".join(f"{reason} {n}" for reason, n in stats.refusals.items()) or "none"
        self.say(
            f"last {stats.period}: {stats.written} of {stats.requests} requests written, "
            f"{stats.tokens} tokens; refused: {refused}"
        )

    def _show(self, written: Written) -> None:
        if written.archived:
            self.say(f"(archived the previous story: {written.archived.title!r})")
        for turn in written.turns:
            self.say(f"[{WHO[turn.kind]}] {turn.text}")


@contextlib.asynccontextmanager
async def spinning(out: TextIO, text: str = "writing…", every: float = 0.1):
    """A spinner on ``out`` while the block runs, on a terminal only; wiped when it ends."""
    if not out.isatty():
        yield
        return

    async def spin() -> None:
        for frame in itertools.cycle(SPINNER):
            out.write(f"\r{frame} {text}")
            out.flush()
            await asyncio.sleep(every)

    task = asyncio.create_task(spin())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        out.write("\r" + " " * (len(text) + 2) + "\r")
        out.flush()


async def stdin_lines(stream: TextIO = sys.stdin, prompt: str = "> "):
    """Lines from ``stream``, read by a daemon thread so the event loop runs meanwhile.

    A daemon thread (not the default executor) so that Ctrl-C ends the console at once instead
    of waiting for a line that may never come.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    interactive = stream.isatty()

    def read() -> None:
        while True:
            line = stream.readline()
            try:
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
            except RuntimeError:  # the console has closed its loop: nobody is reading
                return
            if not line:
                return

    threading.Thread(target=read, name="storybot-stdin", daemon=True).start()
    while True:
        if interactive:
            print(prompt, end="", flush=True)
        line = await lines.get()
        if not line:
            return
        yield line
