"""The cleaning walk: one pass over a notebook that moves code keys and masks the rest.

:func:`clean_notebook` is pure: it takes a notebook dict and returns a cleaned copy plus a
:class:`CleanReport`; it reads and writes nothing. The CLI, the Jupyter Server pre-save hook and
the nbconvert preprocessor all call it, and ``scan`` walks the same leaves with the same scanner
(:func:`ipykeyguard.engine.scan.notebook_findings`), so what ``scan`` reports is what ``clean`` changes.

Policy:

- Findings at or above ``min_confidence`` (default ``likely``) are acted on. Below it they are
  reported in :attr:`CleanReport.below_threshold` and left as they are: a false rewrite breaks a
  user's program, and ``possible`` means entropy alone.
- Code cells: :func:`ipykeyguard.rewrite.rewrite_source` turns each key into an environment
  lookup (``move_code_keys=True``; the caller stores :attr:`CleanReport.secrets`), or each key is
  replaced by its mask (``move_code_keys=False``). Whatever the rewriter leaves behind is masked:
  cleaning fails closed.
- Markdown, raw cells, outputs, tracebacks, widget state, metadata and attachments: each key is
  replaced by :attr:`Finding.mask` (``[secret:NAME]``).
- Known values: every secret acted on anywhere is then masked wherever else its exact text occurs
  in the notebook (an output echoing a key the rules would not match there, a second cell).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from ..engine.config import Config
from ..engine.findings import Confidence, Finding, Secret, mask_for
from ..engine.matcher import compile_alternation, values_finder
from .notebook import is_code_source, iter_leaves, set_leaf
from ..engine.scan import Scanner, env_name_from, notebook_findings, scanner_for

if TYPE_CHECKING:  # pragma: no cover
    from ..storage.store import SecretStore

__all__ = ["CleanReport", "clean_notebook", "clean_and_store", "clean_text", "KIND_LABELS"]

#: How each leaf kind is named in summaries ("masked 3 outputs").
KIND_LABELS = {
    "code": "code",
    "markdown": "markdown",
    "raw": "raw",
    "output": "outputs",
    "metadata": "metadata",
    "attachment": "attachments",
    "text": "text",
}


@dataclass(frozen=True, eq=False)
class CleanReport:
    """What one clean did (or would do). Holds no plaintext: secrets are boxed.

    Attributes:
        findings: The findings acted on (at or above the threshold), located.
        below_threshold: Findings reported but left unchanged.
        moved: Keys moved out of code: variable name -> fingerprint.
        secrets: The same keys, boxed (:class:`Secret`, masked repr), for the caller to store.
        masked: How many spans were replaced by a mask.
        masked_by_kind: The same count per leaf kind (``output``, ``markdown``, ...).
        unrewritten: Code keys the rewriter could not turn into a lookup (they were masked).
        changed: Whether the returned document differs from the input.
        already_stored: Names among ``moved`` whose value the store already held under that name
            (set by :func:`clean_and_store`): the code now reads them, nothing new was stored.
    """

    findings: tuple[Finding, ...] = ()
    below_threshold: tuple[Finding, ...] = ()
    moved: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    masked: int = 0
    masked_by_kind: Mapping[str, int] = field(default_factory=dict)
    unrewritten: int = 0
    changed: bool = False
    already_stored: frozenset[str] = frozenset()

    def summary(self, *, stored_in: str | None = None, dry_run: bool = False) -> str:
        """One line of what was done, names only: ``moved OPENAI_API_KEY to .env; masked 3 outputs``.

        Args:
            stored_in: Where moved keys went (e.g. ``.env``); ``None`` says they were not kept.
            dry_run: Phrase it as what *would* be done.
        """
        parts = []
        new = sorted(set(self.moved) - self.already_stored)
        if new:
            names = ", ".join(new)
            verb = "would move" if dry_run else "moved"
            if stored_in is None:
                verb = "would remove" if dry_run else "removed"
                parts.append(f"{verb} {names} from code (not stored)")
            else:
                parts.append(f"{verb} {names} to {stored_in}")
        if self.already_stored:
            names = ", ".join(sorted(self.already_stored))
            verb = "would read" if dry_run else "read"
            parts.append(f"{verb} {names} from {stored_in or 'the store'}, which already held it")
        if self.masked_by_kind:
            verb = "would mask" if dry_run else "masked"
            counts = ", ".join(
                f"{n} in {KIND_LABELS.get(kind, kind)}" for kind, n in sorted(self.masked_by_kind.items())
            )
            parts.append(f"{verb} {counts}")
        if self.below_threshold:
            parts.append(f"left {len(self.below_threshold)} low-confidence finding(s) unchanged")
        return "; ".join(parts) if parts else "nothing to clean"


def _mask_spans(text: str, findings: list[Finding], masks: Mapping[str, str] | None = None) -> str:
    """``text`` with each finding's span replaced by its mask (spans do not overlap).

    ``masks`` maps a finding's fingerprint to the mask to use instead of its own (the name the
    key is stored under)."""
    pieces, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < last:
            continue
        pieces.append(text[last:f.start])
        pieces.append(masks.get(f.fingerprint, f.mask) if masks else f.mask)
        last = f.end
    pieces.append(text[last:])
    return "".join(pieces)


class _KnownValues:
    """Every occurrence of known values replaced by their masks in one pass per text.

    One Aho-Corasick automaton over all values (leftmost-longest), built once per clean: a
    loop of ``str.replace`` per value cost (values x text size), quadratic when a notebook holds
    thousands of keys. A text holding a lone surrogate, which the automaton cannot read, goes
    through the equivalent trie regex.
    """

    def __init__(self, known: dict[str, str]) -> None:
        self.masks = known
        self._finder = values_finder(list(known)) if known else None
        self._pattern = None

    def replace(self, text: str) -> tuple[str, int]:
        """``(text with every known value masked, number of replacements)``."""
        if not self.masks:
            return text, 0
        spans = self._finder(text) if self._finder is not None else None
        if spans is None:
            if self._pattern is None:
                self._pattern = compile_alternation(list(self.masks))
            spans = [m.span() for m in self._pattern.finditer(text)]
        if not spans:
            return text, 0
        pieces, last = [], 0
        for start, end in spans:
            pieces.append(text[last:start])
            pieces.append(self.masks[text[start:end]])
            last = end
        pieces.append(text[last:])
        return "".join(pieces), len(spans)


_STR_ONLY = frozenset({str})


def _copy_notebook(value):
    """A deep copy of JSON-shaped data, several times faster than :func:`copy.deepcopy`.

    A parsed ``.ipynb`` holds only dicts, lists and immutable scalars, so no memo is needed
    (``json.loads`` never shares a container). Anything else (an nbformat ``NotebookNode``,
    another dict subclass, a tuple) goes to :func:`copy.deepcopy`, which keeps its type.
    """
    kind = type(value)
    if kind is dict:
        return {key: _copy_notebook(item) for key, item in value.items()}
    if kind is list:
        if set(map(type, value)) <= _STR_ONLY:
            return value[:]  # lines of a source or an output: strings are immutable
        return [_copy_notebook(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def _count(value) -> int:
    if isinstance(value, int):
        return value
    try:
        return len(value)
    except TypeError:
        return 0


def clean_notebook(
    nb: dict,
    *,
    config: Config | None = None,
    scanner: Scanner | None = None,
    taken: Mapping[str, str] | None = None,
    move_code_keys: bool = True,
    min_confidence: Confidence | str = Confidence.LIKELY,
) -> tuple[dict, CleanReport]:
    """Clean a notebook: move code keys into environment lookups and mask keys everywhere else.

    Args:
        nb: The notebook (a parsed ``.ipynb`` dict or an nbformat ``NotebookNode``). Never mutated.
        config: Settings (rules, allowlist); the defaults when omitted.
        scanner: A scanner to reuse (built from ``config`` when omitted).
        taken: Names already in the secret store -> fingerprints of their values, so that a key
            already stored keeps its name and a different value gets a suffixed one.
        move_code_keys: Rewrite code keys into ``os.environ`` lookups (the caller must then store
            :attr:`CleanReport.secrets` *before* saving the notebook); ``False`` masks them.
        min_confidence: Act on findings at or above this; report the others.

    Returns:
        ``(notebook, report)``. When ``report.changed`` is false the notebook returned is ``nb``
        itself (nothing was copied); otherwise it is a new, deep-copied notebook.
    """
    threshold = Confidence.parse(min_confidence)
    scanner = scanner or scanner_for(config)
    floor = min(scanner.config.min_confidence, threshold)
    pairs = list(notebook_findings(nb, scanner, min_confidence=floor))
    below = [f for _leaf, found in pairs for f in found if f.confidence < threshold]
    if not any(f.confidence >= threshold for _leaf, found in pairs for f in found):
        return nb, CleanReport(below_threshold=tuple(below))

    out = _copy_notebook(nb)
    taken_now: dict[str, str] = dict(taken or {})
    secrets: dict[str, Secret] = {}
    known: dict[str, str] = {}
    acted: list[Finding] = []
    masked_by_kind: Counter[str] = Counter()
    unrewritten = 0

    if move_code_keys:
        # Code first: the keys the code will read get the rule's own names; a different key
        # met only in an output, markdown or metadata takes a suffixed one.
        pairs.sort(key=lambda pair: not is_code_source(pair[0]))
    for leaf, found in pairs:
        act = [f for f in found if f.confidence >= threshold]
        if not act:
            continue
        acted.extend(act)
        if is_code_source(leaf) and move_code_keys:
            new_text, moved, masked_here, leftover = _rewrite_code(leaf.text, config, scanner, taken_now, threshold)
            for name, secret in moved.items():
                secrets[name] = secret
                taken_now[name] = secret.fingerprint
                known[secret.reveal()] = mask_for(name)
            unrewritten += leftover
            if masked_here:
                masked_by_kind[leaf.kind] += masked_here
        elif move_code_keys:
            # Masked here, stored like a moved key under the name the mask shows.
            masks = {}
            for f in act:
                name = _store_name(f, secrets, taken_now)
                secrets[name] = f.secret
                taken_now[name] = f.fingerprint
                masks[f.fingerprint] = known[f.secret.reveal()] = mask_for(name)
            new_text = _mask_spans(leaf.text, act, masks)
            masked_by_kind[leaf.kind] += len(act)
        else:
            new_text = _mask_spans(leaf.text, act)
            masked_by_kind[leaf.kind] += len(act)
        for f in act:
            known.setdefault(f.secret.reveal(), f.mask)
        set_leaf(out, leaf, new_text)

    # Known-value pass over the cleaned notebook: the same key wherever else it occurs.
    known_values = _KnownValues(known)
    for leaf in iter_leaves(out):
        new_text, n = known_values.replace(leaf.text)
        if n:
            set_leaf(out, leaf, new_text)
            masked_by_kind[leaf.kind] += n

    report = CleanReport(
        findings=tuple(acted),
        below_threshold=tuple(below),
        moved={name: s.fingerprint for name, s in secrets.items()},
        secrets=secrets,
        masked=sum(masked_by_kind.values()),
        masked_by_kind=dict(masked_by_kind),
        unrewritten=unrewritten,
        changed=out != nb,
    )
    return (out if report.changed else nb), report


def clean_and_store(
    nb: dict,
    store: "SecretStore",
    *,
    config: Config | None = None,
    move_code_keys: bool = True,
    min_confidence: Confidence | str = Confidence.LIKELY,
) -> tuple[dict, CleanReport]:
    """:func:`clean_notebook`, then put the keys moved out of code cells into ``store``.

    Names already in the store are reused for the same values. The names are chosen, checked
    and stored under the store's lock (:func:`~ipykeyguard.storage.store.store_lock`), with the
    store re-read inside it: another ``clean``, save or kernel writing the same ``.env`` at the
    same time cannot give one of these names to another key. A notebook without keys to move
    never takes the lock. The caller writes the returned notebook only after this returns, so
    a notebook never refers to a key the store lacks.

    Args:
        nb: The notebook; never mutated.
        store: Where moved keys go (``open_store("none")`` keeps them nowhere).
        config: Settings; the defaults when omitted.
        move_code_keys: Rewrite code keys into lookups (``False`` masks them; nothing is stored).
        min_confidence: Act on findings at or above this.

    Returns:
        ``(notebook, report)`` as :func:`clean_notebook` returns them.

    Raises:
        ipykeyguard.storage.store.StoreError: the moved keys could not be stored.
    """
    from dataclasses import replace

    from ..storage.store import store_lock, taken_names

    def clean(taken):
        return clean_notebook(
            nb, config=config, taken=taken, move_code_keys=move_code_keys, min_confidence=min_confidence
        )

    if not move_code_keys:
        return clean(None)
    taken = taken_names(store)
    cleaned, report = clean(taken)
    if report.changed and report.secrets:
        with store_lock(store):
            locked_taken = taken_names(store)
            if locked_taken != taken:  # another writer came first: name again from what is there now
                taken = locked_taken
                cleaned, report = clean(taken)
            # Names whose value the store already held need no write (the notice says "read").
            held = frozenset(name for name, digest in report.moved.items() if taken.get(name) == digest)
            if held:
                report = replace(report, already_stored=held)
            new = {name: secret.reveal() for name, secret in report.secrets.items() if name not in held}
            if report.changed and new:
                store.put(new, overwrite=False)
    return cleaned, report


def _rewrite_code(
    source: str,
    config: Config | None,
    scanner: Scanner,
    taken: Mapping[str, str],
    threshold: Confidence,
) -> tuple[str, dict[str, Secret], int, int]:
    """Rewrite one code cell's source; mask whatever key the rewriter left in place.

    Returns:
        ``(new source, moved NAME -> Secret, spans masked, keys left by the rewriter)``.
    """
    from .rewrite import rewrite_source

    result = rewrite_source(source, config=config, scanner=scanner, taken=taken, min_confidence=threshold)
    new_text = result.source
    masked = _count(getattr(result, "masked", 0))
    moved = dict(result.moved)
    # Fail closed: a key the rewriter could not place (a syntax error in the cell, a context it
    # does not handle) is masked rather than kept, and stored like a moved key under the name
    # its mask shows: a key removed from a file and kept nowhere would be a key lost.
    leftover = scanner.scan_text(new_text, min_confidence=threshold)
    if leftover:
        masks = {}
        for f in leftover:
            name = _store_name(f, moved, taken)
            moved[name] = f.secret
            masks[f.fingerprint] = mask_for(name)
        new_text = _mask_spans(new_text, leftover, masks)
        masked += len(leftover)
    return new_text, moved, masked, len(leftover)


def _store_name(finding: Finding, moved: Mapping[str, Secret], taken: Mapping[str, str]) -> str:
    """The name to store a masked key under: the name already holding the same value (moved
    here or in the store), else the rule's name with the first free ``_N`` suffix."""
    fp = finding.fingerprint
    for name, secret in moved.items():
        if secret.fingerprint == fp:
            return name
    for name, held in taken.items():
        if held == fp:
            return name
    base = env_name_from(finding.env or finding.rule or "SECRET")
    for n in range(1, 10_000):
        candidate = base if n == 1 else f"{base}_{n}"
        if candidate not in moved and candidate not in taken:
            return candidate
    raise RuntimeError("no free variable name")  # pragma: no cover - 10,000 clashes


def clean_text(
    text: str,
    *,
    config: Config | None = None,
    scanner: Scanner | None = None,
    min_confidence: Confidence | str = Confidence.LIKELY,
    taken: Mapping[str, str] | None = None,
) -> tuple[str, CleanReport]:
    """Clean a plain text file: every key at or above the threshold is replaced by its mask,
    and each such key's other exact occurrences too.

    Plain files (``.py`` included) are masked, never rewritten into lookups: a module, a YAML or
    a shell file has no single right way to read an environment variable, and the rewrite
    is left to the user, who sees ``[secret:NAME]`` in the diff.

    Args:
        text: The file's text.
        config: Settings; the defaults when omitted.
        scanner: A scanner to reuse.
        min_confidence: Act on findings at or above this; report the others.
        taken: Names already in the secret store -> fingerprints of their values. When given,
            each masked key gets a store name (the one already holding its value, else the
            rule's with a free suffix), the mask shows it, and :attr:`CleanReport.secrets`
            holds the keys for the caller to store *before* writing the file: a key masked
            and kept nowhere would be a key lost. ``None``: masks name the rule, nothing to store.

    Returns:
        ``(text, report)``; the text is ``text`` itself when nothing changed.
    """
    threshold = Confidence.parse(min_confidence)
    scanner = scanner or scanner_for(config)
    floor = min(scanner.config.min_confidence, threshold)
    found = scanner.scan_text(text, min_confidence=floor)
    act = [f for f in found if f.confidence >= threshold]
    below = tuple(f for f in found if f.confidence < threshold)
    if not act:
        return text, CleanReport(below_threshold=below)
    secrets: dict[str, Secret] = {}
    masks: dict[str, str] = {}
    if taken is not None:
        taken_now = dict(taken)
        for f in act:
            if f.fingerprint in masks:
                continue
            name = _store_name(f, secrets, taken_now)
            secrets[name] = f.secret
            taken_now[name] = f.fingerprint
            masks[f.fingerprint] = mask_for(name)
    new_text = _mask_spans(text, act, masks)
    new_text, extra = _KnownValues({f.secret.reveal(): masks.get(f.fingerprint, f.mask) for f in act}).replace(new_text)
    count = len(act) + extra
    report = CleanReport(
        findings=tuple(act),
        below_threshold=below,
        moved={name: s.fingerprint for name, s in secrets.items()},
        secrets=secrets,
        masked=count,
        masked_by_kind={"text": count},
        changed=new_text != text,
    )
    return new_text, report
