"""The demo's live view in the terminal: one Rich renderable, rebuilt on every tick.

:func:`render` lays out, from what the traffic and the :class:`~.story.Story` saw:
requests/s, latency p50/p99, deadline misses and fallbacks; answers by model version;
the champion's measured quality over time (a sparkline, from the monitor); alerts as
they fire; the versions timeline (every deployment record and its reason); the story's
milestones. It reads snapshots only; the caller hands it to ``rich.live.Live.update``.
"""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from modelstream.demo.story import Story
from modelstream.demo.traffic import Outcome

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 48, low: float = 0.5, high: float = 1.0) -> str:
    """The last ``width`` values as bars between ``low`` and ``high``."""
    out = []
    for v in values[-width:]:
        share = (min(max(v, low), high) - low) / (high - low)
        out.append(BARS[min(int(share * len(BARS)), len(BARS) - 1)])
    return "".join(out)


def _traffic(outcome: Outcome, elapsed: float, duration: float) -> Table:
    rate, p50, p99 = outcome.window(time.perf_counter())
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("time", f"{elapsed:5.1f} / {duration:.0f} s")
    table.add_row("requests sent", str(outcome.sent))
    table.add_row("answers/s", f"{rate:.0f}")
    table.add_row("latency p50 / p99", f"{p50:.0f} / {p99:.0f} ms")
    table.add_row("fallback answers", str(outcome.fallback))
    table.add_row("deadline misses (504)", str(outcome.missed))
    table.add_row("lost", str(max(outcome.lost - _in_flight(outcome), 0)))
    return table


def _in_flight(outcome: Outcome) -> int:
    # Sent but not answered yet: not lost (yet); the summary counts what stays unanswered.
    return max(outcome.sent - outcome.answered - outcome.missed - sum(outcome.failed.values()), 0)


def _models(outcome: Outcome, champion: str) -> Table:
    table = Table(box=None, padding=(0, 1))
    table.add_column("answered by")
    table.add_column("answers", justify="right")
    total = max(outcome.answered, 1)
    for model, count in sorted(outcome.by_model.items()):
        style = "green" if model == champion else ""
        table.add_row(Text(model, style=style), f"{count} ({100 * count / total:.0f}%)")
    return table


def _world(story: Story) -> Table:
    seen = story.seen
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("sensor events", str(seen.events))
    table.add_row("late events (side stream)", str(seen.late_events))
    table.add_row("labels arrived", str(seen.labels))
    table.add_row("failures", str(story.fleet.failures))
    table.add_row("precursor", story.fleet.precursor)
    return table


def _quality(story: Story) -> RenderableType:
    values = [v for _, v in story.seen.quality]
    if not values:
        return Text("waiting for labels...", style="dim")
    return Group(
        Text(f"{story.seen.champion}: accuracy {values[-1]:.3f} (window of the monitor)"),
        Text(sparkline(values), style="cyan"),
    )


def _lines(items: list[tuple[float, str]], limit: int, empty: str) -> RenderableType:
    if not items:
        return Text(empty, style="dim")
    text = Text()
    for at, line in items[-limit:]:
        text.append(f"{at:5.1f}s ", style="dim")
        text.append(line + "\n")
    return text


def render(story: Story, outcome: Outcome, elapsed: float, duration: float) -> RenderableType:
    """The whole live view (see the module docstring)."""
    layout = Layout()
    layout.split_column(
        Layout(name="top", size=9),
        Layout(name="quality", size=4),
        Layout(name="bottom"),
    )
    layout["top"].split_row(
        Layout(Panel(_traffic(outcome, elapsed, duration), title="traffic")),
        Layout(Panel(_models(outcome, story.seen.champion), title="answers by version")),
        Layout(Panel(_world(story), title="the fleet")),
    )
    layout["quality"].update(Panel(_quality(story), title="champion quality over time"))
    alerts = [(at, f"{a.kind.value}: {a.message}") for at, a in story.seen.alerts]
    story_lines = [(m.at_s, f"[{m.kind}] {m.text}") for m in story.milestones]
    layout["bottom"].split_row(
        Layout(
            Panel(
                Group(
                    _lines(story.seen.timeline, 6, "no deployment yet"),
                ),
                title="versions timeline",
            )
        ),
        Layout(
            Panel(
                Group(_lines(alerts, 4, "no alert"), Text(""), _lines(story_lines, 5, "")),
                title="alerts and the story",
            )
        ),
    )
    return layout
