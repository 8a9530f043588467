"""`evolve chat`: a terminal session with the incumbent policy that learns from ratings.

A turn has two parts. The solver works on the message with the policy's tools; its reasoning
and tool calls appear compactly as they happen. Then the reply to the person is streamed token
by token. Each turn is stored as a user task (split "train") with a pending episode; `/good`
and `/bad why` turn it into a verdict with feedback, which is what the improvement loop learns
from. Ctrl-C cancels the turn in progress (nothing is stored) and keeps the session open.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape

from agent.config import Settings
from agent.errors import ModelUnavailable
from agent.policy import PolicySpec, incumbent
from agent.surfaces.worker import InputError, check_question, rate_episode, user_task
from memory.models import Episode
from memory.trajectory import Reply
from tools.text import terminal_safe

HISTORY_TURNS = 3
REPLY_INSTRUCTION = (
    "Reply to the person directly and briefly, in plain sentences. Use the result of the work "
    "above; do not repeat the working unless it helps."
)

HELP = """\
Type a message and press Enter. Esc then Enter (or Alt+Enter) starts a new line; pasted text
keeps its lines. Ctrl-C cancels an answer in progress; Ctrl-D or /quit leaves.

  /good            the last answer was right (it becomes training experience)
  /bad [why]       the last answer was wrong, and why
  /policy          the policy answering you
  /memory QUERY    search stored experience
  /tools           the tools the agent can call
  /new             start a new conversation (ratings so far are kept)
  /help            this text
  /quit            leave"""


@dataclass
class Turn:
    question: str
    answer: str
    reply: str
    episode_id: int | None
    rated: str = ""


@dataclass
class ChatSession:
    settings: Settings
    store: Any
    model: Any
    tools: list
    console: Console = field(default_factory=Console)
    turns: list[Turn] = field(default_factory=list)
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _solvers: Any = None

    COMMANDS = ("good", "bad", "policy", "memory", "tools", "new", "help", "quit", "exit")

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Act on one line of input. Returns False when the session should end."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/"):
            name, _, arg = text[1:].partition(" ")
            name = name.lower()
            if name not in self.COMMANDS:
                self.say(f"[yellow]unknown command /{escape(name)}[/]; /help lists the commands")
                return True
            if name in ("quit", "exit"):
                return False
            getattr(self, f"cmd_{name}")(arg.strip())
            return True
        self.ask(line)
        return True

    def say(self, text: str) -> None:
        self.console.print(terminal_safe(text), highlight=False)

    # -- a turn -------------------------------------------------------------------------------

    def _solver_for(self, policy):
        if self._solvers is None:
            from agent.attempt import Solvers

            self._solvers = Solvers(self.settings, self.model, self.tools)
        return self._solvers.for_policy(policy)

    def _show_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "thought":
            text = " ".join(str(data.get("text", "")).split())
            self.say(f"[dim]· {escape(text[:160])}{'…' if len(text) > 160 else ''}[/]")
        elif kind == "action" and data.get("action") != "final_answer":
            self.say(f"[cyan]⚙ {escape(str(data['action']))}[/]([bold]{escape(str(data.get('input', ''))[:120])}[/])")
        elif kind == "observation":
            content = " ".join(str(data.get("content", "")).split())
            style = "green" if data.get("ok") else "red"
            self.say(f"  [{style}]→ {escape(content[:160])}[/]")
        elif kind == "parse_error":
            self.say("[dim]· (reformatting)[/]")

    def _question_with_history(self, text: str) -> str:
        if not self.turns:
            return text
        lines = ["Conversation so far:"]
        for t in self.turns[-HISTORY_TURNS:]:
            lines += [f"User: {t.question}", f"Assistant: {t.reply or t.answer}"]
        return "\n".join(lines) + f"\n\nNow answer this: {text}"

    def ask(self, text: str) -> Turn | None:
        try:
            text = check_question(text, what="message")
        except InputError as exc:
            self.say(f"[yellow]{escape(str(exc))}[/]")
            return None
        from agent.attempt import run_attempt

        policy = incumbent(self.store)
        spec = PolicySpec.model_validate(policy.spec)
        task = user_task(text, suite="chat")
        replies: list[str] = []

        def reply(result) -> list[Reply]:
            replies.append(self._stream_reply(spec, text, result))
            return [Reply(text=replies[-1])]

        try:
            self.store.upsert_tasks([task])
            episode = run_attempt(
                store=self.store, solver=self._solver_for(policy), task=task, policy=policy,
                run_key=f"chat/{self.session_id}/{len(self.turns)}/{uuid.uuid4().hex[:6]}", source="chat",
                question=self._question_with_history(text), on_event=self._show_event, finish=reply)
        except KeyboardInterrupt:
            self.console.print()
            self.say("[yellow]cancelled[/] (nothing stored)")
            return None
        except ModelUnavailable as exc:
            self.say(f"[red]the model is unavailable:[/] {escape(str(exc))}. Your message was not stored; try again.")
            return None
        except Exception as exc:  # a broken turn must not end the session
            self.say(f"[red]this turn failed:[/] {escape(type(exc).__name__ + ': ' + str(exc))}")
            return None
        if episode.verdict == "error":
            self.say(f"[red]this turn failed:[/] {escape(episode.error)}")
            return None
        turn = Turn(question=text, answer=episode.final_answer, reply=replies[-1] if replies else "",
                    episode_id=episode.id)
        self.turns.append(turn)
        return turn

    def _stream_reply(self, spec: PolicySpec, text: str, result) -> str:
        work = result.trajectory.work_summary()
        answer = result.final_answer or "(no answer found)"
        messages: list[dict[str, str]] = [{"role": "system", "content": spec.system_prompt}]
        for t in self.turns[-HISTORY_TURNS:]:
            messages += [{"role": "user", "content": t.question}, {"role": "assistant", "content": t.reply or t.answer}]
        messages += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Work: " + ("; ".join(work) or "reasoned it through")
             + f". Result: {answer}"},
            {"role": "user", "content": REPLY_INSTRUCTION},
        ]
        out = self.console.file
        pieces = []
        for piece in self.model.stream(messages, max_tokens=self.settings.model.max_tokens):
            pieces.append(piece)
            out.write(terminal_safe(piece))
            out.flush()
        out.write("\n")
        out.flush()
        return "".join(pieces).strip()

    # -- commands -----------------------------------------------------------------------------

    def _rate(self, good: bool, why: str) -> None:
        if not self.turns or self.turns[-1].episode_id is None:
            self.say("[yellow]nothing to rate yet[/]: ask something first")
            return
        turn = self.turns[-1]
        rate_episode(self.store, turn.episode_id, good, why)
        turn.rated = "good" if good else "bad"
        self.say(f"[green]noted[/]: rated {turn.rated}" + (f" ({escape(why)})" if why else "")
                 + "; the next improvement cycle learns from it")

    def cmd_good(self, arg: str) -> None:
        self._rate(True, arg)

    def cmd_bad(self, arg: str) -> None:
        self._rate(False, arg)

    def cmd_policy(self, arg: str) -> None:
        policy = incumbent(self.store)
        spec = PolicySpec.model_validate(policy.spec)
        self.say(f"[bold]{escape(policy.id)}[/] (version {policy.version}{', ' + escape(policy.note) if policy.note else ''})")
        self.say(f"  tools: {', '.join(spec.tools) or 'none'} · max steps {spec.max_steps} · "
                 f"exemplars per question {spec.exemplars_k} · skills {spec.skills_k}")
        self.say(f"  system prompt: {escape(spec.system_prompt[:300])}")
        if spec.insights:
            self.say(f"  insights ({len(spec.insights)}):")
            for ins in spec.insights:
                self.say(f"   - {escape(ins[:200])}")
        else:
            self.say("  insights: none yet")

    def cmd_memory(self, arg: str) -> None:
        if not arg:
            self.say("[yellow]usage:[/] /memory QUERY, e.g. /memory percentages")
            return
        hits = self.store.search_scored(arg, k=5)
        if not hits:
            self.say("no stored experience yet")
            return
        for exp, sim in hits:
            content = " ".join(exp.content.split())
            self.say(f"  [bold]{exp.kind}[/] #{exp.id} [dim]({exp.split}, {exp.trust}, similarity {sim:.2f}, "
                     f"{exp.successes}/{exp.uses} wins)[/] {escape(content[:200])}")

    def cmd_tools(self, arg: str) -> None:
        enabled = set(PolicySpec.model_validate(incumbent(self.store).spec).tools)
        for t in self.tools:
            first = (t.description or "").strip().splitlines()[0] if t.description else ""
            mark = "[green]on [/]" if t.name in enabled else "[dim]off[/]"
            self.say(f"  {mark} [bold]{escape(t.name)}[/] {escape(first[:100])}")
        self.say("[dim]the policy decides which tools are on[/]")

    def cmd_new(self, arg: str) -> None:
        self.turns = []
        self.session_id = uuid.uuid4().hex[:10]
        self.say("new conversation")

    def cmd_help(self, arg: str) -> None:
        self.console.print(HELP, markup=False, highlight=False)


def repl(session: ChatSession, *, prompt: Callable[[], str] | None = None) -> int:
    """Read lines until /quit or end of input. Returns the exit code."""
    session.say(f"[bold]evolve chat[/] · policy {escape(incumbent(session.store).id)} · /help for commands")
    read = prompt or _prompt_reader(session.settings)
    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line, as in a shell
        except EOFError:
            break
        if not session.handle(line):
            break
    session.say("bye")
    return 0


def _prompt_reader(settings: Settings) -> Callable[[], str]:
    import sys

    if not sys.stdin.isatty():
        # Piped input (scripts, `echo ... | evolve chat`): one line per message.
        def read_line() -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")

        return read_line

    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    settings.home.mkdir(parents=True, exist_ok=True)
    session = PromptSession(history=FileHistory(str(settings.home / "chat_history")), key_bindings=keys,
                            multiline=False, prompt_continuation=lambda width, line, wrap: "… ".rjust(width))
    return lambda: session.prompt("› ")
