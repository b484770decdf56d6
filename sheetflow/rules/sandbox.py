"""The one sandbox every template renders in: email subjects and bodies, task and notification texts.

    results = render_batch({tid: (source, html)}, [((subject_tid, body_tid), context), ...], broken)
    # one list per item: a str per part, or a RenderError (then the item's later parts are not rendered)

Templates are written by anyone who can edit the workbook, so they are hostile input. Jinja2's
``ImmutableSandboxedEnvironment`` stops code execution but not resource use: ``{{ 'x'|center(10**11) }}``,
``range(99999)|join('x'*400000)``, a namespace doubling a string in a loop, ``lipsum(100000)`` or loops
over long strings exhaust memory or time, and deep nesting crashes Python's parser. So:

- On POSIX, every render runs in a **worker process** (forked once and reused for the whole run, so
  thousands of emails cost one fork, not one each) under OS limits: address space
  (:data:`MAX_RENDER_MEMORY` above what the worker starts with, ``RLIMIT_AS``), CPU time per email
  (:data:`MAX_RENDER_SECONDS`: a profiling timer interrupts Python code, ``RLIMIT_CPU`` kills C code that
  runs on) and a wall-clock deadline kept by the parent, which kills a worker that does not answer. A
  worker that hit a limit is replaced; the template is then *broken* for the rest of the run (its other
  emails are not tried: a time bomb must not cost its limit once per record).
- Output is capped at :data:`MAX_OUTPUT_CHARS` while it is produced; ``range()`` loops at
  :data:`MAX_LOOP_ITEMS`; ``**`` and ``*`` refuse results that are obviously too big. Syntax the
  compiler cannot take (deep nesting: ``RecursionError``, Python's 20 nested blocks / 100 indentation
  levels) is a template error, like any other.
- A printed value that is a method or function (``{{ first_name.format }}``) is an error, not
  ``<function ...>``; values print as the user sees them in the cell (:func:`shown`).
- Without ``fork`` and ``resource`` (Windows) the same code renders in-process with the output, loop
  and time checks only (time checked between template operations).

Every failure comes back as a :class:`RenderError` value (``kind``: ``field`` — a merge field missing
for one record; ``template`` — the template itself; ``limit`` — a resource limit), never an exception.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import html as html_lib
import math
import multiprocessing
import os
import re
import signal
import time
import warnings
from collections.abc import Iterator
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.defaults import DEFAULT_NAMESPACE
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sheetflow.problems import RuleError

MAX_TEMPLATE_CHARS = 100_000  # subject or body source
MAX_OUTPUT_CHARS = 500_000  # one rendered part
MAX_RENDER_SECONDS = 1.0  # CPU time of one email (all its parts); a real email renders in milliseconds
MAX_RENDER_MEMORY = 256 * 2**20  # bytes of address space a worker may add to what it started with
MAX_LOOP_ITEMS = 100_000  # range() items per render, all loops together
BATCH_ITEMS = 500  # emails per message to the worker
WALL_SECONDS = 10.0  # the parent's deadline per email before it kills the worker (CPU limits come first)

_SLOW = f"not allowed: the template took more than {MAX_RENDER_SECONDS:g} s to render (the limit per email)"
_BIG = f"not allowed: the template needs more than {MAX_RENDER_MEMORY // 2**20} MB of memory (the limit per email)"
_KILLED = (
    f"not allowed: the template used more than {MAX_RENDER_MEMORY // 2**20} MB of memory or "
    f"{MAX_RENDER_SECONDS:g} s of time"
)


class RenderError(RuleError):
    """A template could not be rendered; ``field`` is the merge field at fault, if known.

    ``kind``: ``field`` (a value missing for this record), ``template`` (the template is wrong) or
    ``limit`` (it ran into a resource limit: the template is broken for the rest of the run)."""

    def __init__(self, message: str, field: str = "", kind: str = "template", where: str = ""):
        super().__init__(message)
        self.field = field
        self.kind = kind
        self.where = where  # the cell of the template part, when known (Templates!C2)

    def __reduce__(self):  # crosses the pipe from the worker
        return (RenderError, (str(self), self.field, self.kind, self.where))


# ---------------------------------------------------------------- values as the user sees them


class Fields(dict):
    """A mapping of merge fields (``owner``, ``contact``, ...) that names itself in error messages.

    Printed as a whole it shows its ``display`` value: ``{{ owner }}`` is the owner's name."""

    def __init__(self, prefix: str, values: dict[str, Any], display: str = ""):
        super().__init__(values)
        self.prefix = prefix
        self.display = display

    def __str__(self) -> str:
        return self.display

    def __html__(self) -> str:
        return html_lib.escape(self.display)


class CellDate(dt.datetime):
    """A date cell as a merge field: prints as the workbook shows dates (``05/03/2026`` in pt-BR), with
    the time only when it has one; still a datetime (``strftime``, comparisons)."""

    shown_as: str = "%m/%d/%Y"

    def __str__(self) -> str:
        fmt = self.shown_as + (" %H:%M" if self.hour or self.minute else "")
        return self.strftime(fmt)

    def __html__(self) -> str:
        return html_lib.escape(str(self))

    def __reduce_ex__(self, protocol):  # noqa: ANN001 - datetime's own would drop shown_as
        return (_cell_date, (self.year, self.month, self.day, self.hour, self.minute, self.shown_as))


def _cell_date(y: int, mo: int, d: int, h: int, mi: int, fmt: str) -> CellDate:
    value = CellDate(y, mo, d, h, mi)
    value.shown_as = fmt
    return value


class CellNumber(float):
    """A number cell as a merge field: prints as the cell shows it in the workbook's locale
    (``34,30`` for an amount in pt-BR); arithmetic gives plain numbers."""

    text: str = ""

    def __str__(self) -> str:
        return self.text or repr(float(self))

    def __html__(self) -> str:
        return html_lib.escape(str(self))

    def __reduce_ex__(self, protocol):  # noqa: ANN001
        return (_cell_number, (float(self), self.text))


class CellFlag(int):
    """A yes/no cell as a merge field: prints as the cell shows it (``SIM``, ``yes``, or ``TRUE``/``FALSE``
    — ``VERDADEIRO``/``FALSO`` in a pt-BR workbook — for a real boolean cell); still 1/0 for
    ``{% if vip %}`` and ``vip == true``."""

    text: str = ""

    def __str__(self) -> str:
        return self.text or ("TRUE" if self else "FALSE")

    def __repr__(self) -> str:
        return str(self)

    def __html__(self) -> str:
        return html_lib.escape(str(self))

    def __reduce_ex__(self, protocol):  # noqa: ANN001
        return (_cell_flag, (bool(self), self.text))


def _cell_flag(value: bool, text: str) -> CellFlag:
    flag = CellFlag(1 if value else 0)
    flag.text = text
    return flag


BOOL_WORDS = {False: ("TRUE", "FALSE"), True: ("VERDADEIRO", "FALSO")}  # portuguese -> (yes, no)


def _cell_number(value: float, text: str) -> CellNumber:
    number = CellNumber(value)
    number.text = text
    return number


# Columns whose numbers are money: shown with two decimals, like the currency format people give them.
_MONEY = re.compile(
    r"(^|_)(amount|valor|value|price|preco|revenue|receita|faturamento|mrr|arr|total|custo|cost|"
    r"ticket|budget|orcamento|deal_size|montante|salario|salary|fee|taxa)(_|$)"
)


def format_number(value: float, *, money: bool = False, decimal_comma: bool = False) -> str:
    """A number as a spreadsheet shows it: money with two decimals and thousands separators
    (``1.234,50`` / ``1,234.50``), other numbers like the General format (``34,3`` / ``34.3``, ``12``)."""
    if math.isnan(value) or math.isinf(value):
        return ""
    if money:
        text = f"{value:,.2f}"
    elif value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    else:
        text = f"{value:.10g}"
        if "e" in text:
            return text.replace(".", ",") if decimal_comma else text
    if decimal_comma:
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def shown(
    value: Any,
    column: str,
    *,
    day_first: bool,
    decimal_comma: bool,
    typed: str = "",
    portuguese: bool = False,
) -> Any:
    """A cell value as a merge field: dates, numbers and yes/no print as the user sees them, the rest as
    is. ``typed``: the text a yes/no cell holds (``SIM``); without it a boolean prints as Excel shows a
    boolean cell in the workbook's language (TRUE/FALSE, VERDADEIRO/FALSO)."""
    if value is None:
        return value
    if isinstance(value, bool):
        yes, no = BOOL_WORDS[portuguese]
        return _cell_flag(bool(value), typed or (yes if value else no))
    if isinstance(value, dt.datetime) or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        hour = getattr(value, "hour", 0)
        minute = getattr(value, "minute", 0)
        return _cell_date(
            value.year, value.month, value.day, hour, minute, "%d/%m/%Y" if day_first else "%m/%d/%Y"
        )
    if isinstance(value, (int, float)):
        number = float(value)
        money = bool(_MONEY.search(column.lower()))
        return _cell_number(number, format_number(number, money=money, decimal_comma=decimal_comma))
    return value


# ---------------------------------------------------------------- the Jinja2 environment

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("sheetflow_render_deadline", default=0.0)
_loop_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("sheetflow_loop_budget")


def _check_deadline() -> None:
    deadline = _deadline.get()
    if deadline and time.monotonic() > deadline:
        raise SecurityError(f"the template took longer than {MAX_RENDER_SECONDS:g} s to render")


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict when printed or compared, but ``owner.name | default("x")`` works when owner is empty."""

    __slots__ = ()


def _counted_range(*args: int) -> Iterator[int]:
    r = range(*args)
    budget = _loop_budget.get(None)
    if budget is not None:
        budget[0] -= len(r)
        if budget[0] < 0:
            raise SecurityError(f"loops in the template go over {MAX_LOOP_ITEMS} items")
    for n, value in enumerate(r):
        if n % 1000 == 0:
            _check_deadline()
        yield value


def _finalize(value: Any) -> Any:
    """What ``{{ ... }}`` prints: a value, never a method or function (``first_name.format``)."""
    if callable(value) and not isinstance(value, (Undefined, Fields)):
        name = getattr(value, "__name__", "") or type(value).__name__
        language = isinstance(value, type) or value is _counted_range
        language = language or any(value is v for v in DEFAULT_NAMESPACE.values())
        if not language:  # a method of a field's value
            raise SecurityError(f'"{name}" is a method, not a value — write the field without ".{name}"')
        raise SecurityError(  # a function of the template language (cycler, joiner, namespace, lipsum)
            f'"{name}" is a function of the template language, not a value — print a field instead, '
            "e.g. {{ first_name }}"
        )
    return value


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):  # noqa: ANN001 - jinja's signature
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large in template")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(n, int)
                    and len(seq) * n > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("template builds a text that is too long")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's signature
        _check_deadline()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):  # noqa: ANN001
        if isinstance(obj, Fields):  # item first: a column called "items" is a field, not dict.items
            if attribute in obj:
                return obj[attribute]
            return self.undefined(name=f"{obj.prefix}.{attribute}")
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):  # noqa: ANN001
        if isinstance(obj, Fields) and isinstance(argument, str) and argument not in obj:
            return self.undefined(name=f"{obj.prefix}.{argument}")
        return super().getitem(obj, argument)


def environment(*, html: bool = False) -> ImmutableSandboxedEnvironment:
    env = _Env(undefined=_Undefined, autoescape=html, keep_trailing_newline=True, finalize=_finalize)
    env.globals["range"] = _counted_range
    return env


_TEXT_ENV = environment()
_HTML_ENV = environment(html=True)


def template_id(source: str, html: bool) -> str:
    """The identity of a template text (its hash): the worker caches compiled templates by it."""
    return ("h" if html else "t") + hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]


# ---------------------------------------------------------------- one render (worker or in-process)

_compiled: dict[str, Template | RenderError] = {}


def _compile(tid: str, source: str, html: bool) -> Template:
    found = _compiled.get(tid)
    if found is None:
        found = _compile_now(source, html)
        if len(_compiled) > 2000:
            _compiled.clear()
        _compiled[tid] = found
    if isinstance(found, RenderError):
        raise found
    return found


def _compile_now(source: str, html: bool) -> Template | RenderError:
    if len(source) > MAX_TEMPLATE_CHARS:
        return RenderError(f"is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        return (_HTML_ENV if html else _TEXT_ENV).from_string(source)
    except TemplateSyntaxError as e:
        return RenderError(f"{e.message} (line {e.lineno})")
    except (RecursionError, SyntaxError, MemoryError, OverflowError):  # IndentationError is a SyntaxError
        return RenderError("is nested too deeply (too many brackets, loops or ifs inside each other)")
    except TemplateError as e:
        return RenderError(str(e))


def _names(source: str, html: bool) -> str:
    """The undeclared top-level names of a template, joined by \\x1f (what ``check`` compares)."""
    compiled = _compile(template_id(source, html), source, html)  # syntax errors first
    del compiled
    try:
        parsed = (_HTML_ENV if html else _TEXT_ENV).parse(source)
        return "\x1f".join(sorted(meta.find_undeclared_variables(parsed)))
    except (RecursionError, MemoryError):
        raise RenderError(
            "is nested too deeply (too many brackets, loops or ifs inside each other)"
        ) from None


def _render_one(template: Template, context: dict[str, Any]) -> str:
    token_d = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    token_b = _loop_budget.set([MAX_LOOP_ITEMS])
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(
                    f"not allowed: the rendered text is longer than {MAX_OUTPUT_CHARS} characters",
                    kind="limit",
                )
            parts.append(chunk)
            _check_deadline()
    except RenderError:
        raise
    except UndefinedError as e:
        raise RenderError(str(e), _undefined_name(str(e)), kind="field") from None
    except SecurityError as e:
        kind = (
            "limit" if "longer than" in str(e) or "too long" in str(e) or "go over" in str(e) else "template"
        )
        raise RenderError(f"not allowed: {e}", kind=kind) from None
    except RecursionError:
        raise RenderError("not allowed: the template calls itself without end", kind="limit") from None
    except MemoryError:
        raise RenderError(_BIG, kind="limit") from None
    except TemplateError as e:
        raise RenderError(str(e) or "the template failed") from None
    except Exception as e:  # noqa: BLE001 - e.g. AssertionError from truncate(-1): still the template's fault
        raise RenderError(_plain(e)) from None
    finally:
        _deadline.reset(token_d)
        _loop_budget.reset(token_b)
    return "".join(parts)


def _plain(e: Exception) -> str:
    """A Python error inside a template in words a workbook user reads (no class names): the template's
    own mistake, such as ``truncate(-1)`` (AssertionError), ``1/0`` or ``{% include %}``."""
    text = str(e).strip()
    if isinstance(e, TypeError) and "loader" in text:
        return "a template cannot include, import or extend another template ({% include %}, {% import %})"
    if isinstance(e, ZeroDivisionError):
        return "the template divides by zero"
    if isinstance(e, AssertionError):
        return f"a filter was given a value it cannot use ({text})" if text else "a filter was misused"
    if isinstance(e, LookupError):
        return f"the template asks for an item that is not there ({text})" if text else "no such item"
    return f"the template cannot compute a value ({text})" if text else "the template failed"


def _undefined_name(message: str) -> str:
    m = re.search(r"'([^']+)' is undefined", message) or re.search(r"has no attribute '([^']+)'", message)
    return m.group(1) if m else ""


def _item(sources: dict[str, tuple[str, bool]], tids: tuple[str, ...], context: Any) -> list[Any]:
    """Render one item's parts in order; a RenderError stops the item. ``?tid`` asks for names."""
    out: list[Any] = []
    for tid in tids:
        try:
            if tid.startswith("?"):
                source, html = sources[tid[1:]]
                out.append(_names(source, html))
            else:
                source, html = sources[tid]
                out.append(_render_one(_compile(tid, source, html), context))
        except RenderError as e:
            out.append(e)
            break
        except _OutOfTime:  # the worker's CPU timer: this part is at fault
            out.append(RenderError(_SLOW, kind="limit"))
            break
        except MemoryError:
            out.append(RenderError(_BIG, kind="limit"))
            break
    return out


# ---------------------------------------------------------------- the worker process


class _OutOfTime(BaseException):
    """Raised by the CPU timer inside the worker; a BaseException so no template code can swallow it."""


def _on_timer(signum, frame):  # noqa: ANN001
    raise _OutOfTime


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _isolate_fds(keep: int) -> None:
    """The worker holds nothing of the parent's: not the caller's stdout pipe (a killed run must not
    leave a worker keeping its pipes open), not the workbook, the journal or the parent's end of the
    pipe (so the worker sees EOF, and exits, when the parent is gone)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        open_fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 1024))
    for fd in open_fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _worker_main(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    try:
        _serve(conn)
    finally:
        os._exit(0)  # never run the parent's atexit handlers or flush its buffers


def _serve(conn) -> None:  # noqa: ANN001
    import resource

    _isolate_fds(conn.fileno())
    base = _address_space()
    if base:
        limit = base + MAX_RENDER_MEMORY
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    signal.signal(signal.SIGPROF, _on_timer)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        sources, items = job
        for tids, context in items:
            used = resource.getrusage(resource.RUSAGE_SELF)
            spent = used.ru_utime + used.ru_stime
            soft = int(spent + MAX_RENDER_SECONDS) + 3
            if cpu_hard == resource.RLIM_INFINITY or soft < cpu_hard:
                resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
            fatal = False
            try:
                signal.setitimer(signal.ITIMER_PROF, MAX_RENDER_SECONDS)
                out = _item(sources, tids, context)
            except _OutOfTime:
                out, fatal = [RenderError(_SLOW, kind="limit")], True
            except MemoryError:
                out, fatal = [RenderError(_BIG, kind="limit")], True
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            fatal = fatal or any(isinstance(r, RenderError) and r.kind == "limit" for r in out)
            try:
                conn.send(out)
            except Exception:  # noqa: BLE001 - e.g. MemoryError pickling a huge result: die, the parent knows
                os._exit(3)
            if fatal:  # a worker that hit a limit is not trusted with the next email
                os._exit(0)


class _Worker:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        with warnings.catch_warnings():  # "multi-threaded, use of fork() may lead to deadlocks": the
            warnings.simplefilter("ignore", DeprecationWarning)  # child only runs Jinja2, no locks
            self.process = ctx.Process(
                target=_worker_main, args=(child,), daemon=True, name="sheetflow-render"
            )
            self.process.start()
        child.close()

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, AttributeError):  # pragma: no cover - already gone
            pass
        self.process.join(2)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


_worker: _Worker | None = None


def can_isolate() -> bool:
    """Renders run in a worker with OS limits (POSIX with fork and the resource module)."""
    try:
        import resource  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        return False
    return (
        "fork" in multiprocessing.get_all_start_methods() and os.environ.get("SHEETFLOW_SANDBOX") != "inline"
    )


def _get_worker() -> _Worker:
    global _worker
    if _worker is None or not _worker.alive():
        if _worker is not None:
            _worker.kill()
        _worker = _Worker()
    return _worker


def _drop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.kill()
        _worker = None


def shutdown() -> None:
    """Stop the worker (the end of a run, or of the process)."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


def render_batch(
    sources: dict[str, tuple[str, bool]],
    items: list[tuple[tuple[str, ...], Any]],
    broken: dict[str, RenderError] | None = None,
) -> list[list[Any]]:
    """Render many items in the sandbox; one list per item (str per part, or a RenderError last).

    ``sources`` maps template ids (:func:`template_id`) to (source, html); a part ``?ID`` asks for the
    template's undeclared names instead (``check``). ``broken`` (kept by the caller for one run) collects
    templates that hit a limit: later items using them get the same error without being tried."""
    broken = broken if broken is not None else {}
    results: list[list[Any] | None] = [None] * len(items)
    pending = list(range(len(items)))
    isolate = can_isolate()
    while pending:
        todo = []
        for i in pending:
            at = next((n for n, t in enumerate(items[i][0]) if t.lstrip("?") in broken), None)
            if at is not None:  # the error stands where that part is (earlier parts: not rendered)
                results[i] = [""] * at + [broken[items[i][0][at].lstrip("?")]]
            else:
                todo.append(i)
        if not todo:
            break
        if not isolate:
            for i in todo:
                results[i] = out_i = _item(sources, *items[i])
                _note_broken(items[i][0], out_i, broken)
            break
        todo = todo[:BATCH_ITEMS]  # bounded messages; the rest goes in the next round
        needed = {t.lstrip("?") for i in todo for t in items[i][0]}
        job = ({t: sources[t] for t in needed}, [items[i] for i in todo])
        worker = _get_worker()
        try:
            worker.conn.send(job)
        except (OSError, ValueError):
            _drop_worker()
            worker = _get_worker()
            worker.conn.send(job)
        done = 0
        for i in todo:
            out = None
            try:
                if worker.conn.poll(WALL_SECONDS):
                    out = worker.conn.recv()
            except (EOFError, OSError):
                out = None
            done += 1
            if out is None:  # killed by a limit, or no answer in time
                _drop_worker()
                results[i] = killed = [RenderError(_KILLED, kind="limit")]
                for t in items[i][0]:
                    broken.setdefault(t.lstrip("?"), killed[0])
                break
            results[i] = out
            if _note_broken(items[i][0], out, broken):
                _drop_worker()  # it exits by itself after a limit; do not wait for it
                break
        pending = todo[done:] + [i for i in pending if i > todo[-1]]
    return [r if r is not None else [RenderError(_KILLED, kind="limit")] for r in results]


def _note_broken(tids: tuple[str, ...], out: list[Any], broken: dict[str, RenderError]) -> bool:
    last = out[-1] if out else None
    if isinstance(last, RenderError) and last.kind == "limit":
        broken.setdefault(tids[len(out) - 1].lstrip("?"), last)
        return True
    return False
