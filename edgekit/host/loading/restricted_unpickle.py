"""A pickle reader that builds only harmless objects, of sizes the pickle itself holds.

SB3 stores the spaces and ``policy_kwargs`` of a model as cloudpickle inside
the zip's ``data`` JSON (and rl-zoo3 its VecNormalize statistics as a pickle).
``pickle.loads`` imports and calls whatever a pickle names, so opening a model
that way can run any code its author chose. This reader checks every global a
pickle names against the table of ``edgekit.host.loading.pickle_rules`` before
anything is imported, and every operation the pickle asks for against that
name's rule:

* calling it (``REDUCE``, ``INST``, ``OBJ``): only a ``Call`` rule, with arguments
  its check accepts;
* creating an instance without its constructor (``NEWOBJ``): only a ``Restore``
  rule, with no arguments;
* setting an object's state (``BUILD``): checked by the object's type;
* appending or setting items: only on plain lists, dicts and sets.

So a pickle cannot run code, cannot call ``Box(0, 1, (10**9,))`` or
``bytearray(10**9)``, and cannot hand one allowed callable another to call.
Anything else raises ``UnsafePickleError`` (a name not on the table) or a
one-line ``ModelFileError`` that says what was refused. The hooks need the
Python implementation of the unpickler; the pickles read here are small.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from edgekit.core.errors import ModelFileError, UnsafePickleError
from edgekit.host.loading.pickle_rules import MODULE_ALIASES, RULES, Call, Reference, Restore, Rule, check_state

MAX_MEMO_INDEX = 1 << 16  # the C unpickler grows its memo table to the largest index it is given


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves names on the table only and lets each do what its rule allows."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, payload: bytes, where: str, extra: Mapping[tuple[str, str], Any] | None = None) -> None:
        super().__init__(io.BytesIO(payload))
        self.where = where
        self.extra = {key: value if isinstance(value, (Reference, Call, Restore)) else Reference(lambda v=value: v)
                      for key, value in (extra or {}).items()}
        self.rules: dict[int, tuple[Rule, str]] = {}  # id of each resolved object -> its rule and name
        self.restorable: tuple[type, ...] = ()

    def find_class(self, module: str, name: str) -> Any:
        canonical = MODULE_ALIASES.get(module, module)
        rule = self.extra.get((canonical, name)) or RULES.get((canonical, name))
        if rule is None:
            raise UnsafePickleError(
                f"{self.where} refers to {module}.{name}, which edgekit does not load from a pickle "
                "(unpickling a class or function can run code)"
            )
        value = rule.load()
        self.rules[id(value)] = (rule, f"{module}.{name}")
        if isinstance(rule, Restore):
            self.restorable = (*self.restorable, value)
        return value

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not allowed")

    def _rule(self, obj: Any) -> tuple[Rule | None, str]:
        rule, name = self.rules.get(id(obj), (None, ""))
        return rule, name or getattr(obj, "__qualname__", type(obj).__name__)

    def _call(self, func: Any, args: Any) -> Any:
        rule, name = self._rule(func)
        if not isinstance(rule, Call):
            raise UnsafePickleError(f"{self.where} calls {name}, which edgekit lets a pickle name but not call")
        if type(args) is not tuple:
            raise pickle.UnpicklingError(f"{name} is called with {type(args).__name__} arguments")
        rule.check(args)
        return func(*args)

    def _new(self, cls: Any, args: Any, kwargs: Any = None) -> Any:
        rule, name = self._rule(cls)
        if not isinstance(rule, Restore):
            raise UnsafePickleError(f"{self.where} creates a {name}, which edgekit lets a pickle name but not create")
        if args != () or kwargs:
            raise pickle.UnpicklingError(f"{name} may be restored from its state only, not built from arguments")
        return cls.__new__(cls)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: Any) -> None:
        """INST and OBJ (protocols 0 and 1): a call, or a restore when there are no arguments."""
        rule, _name = self._rule(klass)
        if not args and isinstance(rule, Restore):
            self.append(self._new(klass, ()))
        else:
            self.append(self._call(klass, tuple(args)))

    def _load_build(self) -> None:
        check_state(self.stack[-2], self.stack[-1], self.restorable)
        pickle._Unpickler.load_build(self)

    def _load_append(self) -> None:
        self._container(list)
        pickle._Unpickler.load_append(self)

    def _load_appends(self) -> None:
        self._container(list, marked=True)
        pickle._Unpickler.load_appends(self)

    def _load_setitem(self) -> None:
        self._container(dict, OrderedDict, depth=3)
        pickle._Unpickler.load_setitem(self)

    def _load_setitems(self) -> None:
        self._container(dict, OrderedDict, marked=True)
        pickle._Unpickler.load_setitems(self)

    def _load_additems(self) -> None:
        self._container(set, marked=True)
        pickle._Unpickler.load_additems(self)

    def _container(self, *kinds: type, depth: int = 2, marked: bool = False) -> None:
        """The object items go into (under them, or under the mark) must be a plain container: another
        object's ``append`` or ``__setitem__`` is code the pickle would choose."""
        target = self.metastack[-1][-1] if marked and self.metastack and self.metastack[-1] else \
            self.stack[-depth] if len(self.stack) >= depth else None
        if type(target) not in kinds:
            raise pickle.UnpicklingError(f"items may be added to a {kinds[0].__name__} only, "
                                         f"not to a {type(target).__name__}")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.ADDITEMS[0]] = _load_additems


def _prescan(payload: bytes) -> None:
    """Parse the opcodes without running them: a damaged or hostile length or memo index fails here
    instead of making the unpickler allocate gigabytes."""
    for op, arg, _pos in pickletools.genops(payload):
        if op.name.endswith(("PUT", "GET")) and isinstance(arg, int) and not 0 <= arg < MAX_MEMO_INDEX:
            raise pickle.UnpicklingError(f"memo index {arg} is out of range")


def restricted_loads(payload: bytes, where: str, extra: Mapping[tuple[str, str], Any] | None = None,
                     check: Callable[[Any], None] | None = None, hint: str | None = None) -> Any:
    """Decode one pickle with the table; ``where`` names it in errors (e.g. "model.zip's action_space"),
    ``hint`` replaces their fix line (default: a model zip's).

    ``extra`` adds names for this pickle only: a ``pickle_rules`` rule, or an object (named, never called).
    """
    try:
        return _loads(payload, where, extra, check)
    except ModelFileError as exc:
        if hint is not None:
            exc.hint = hint
        raise


def _loads(payload: bytes, where: str, extra: Mapping[tuple[str, str], Any] | None,
           check: Callable[[Any], None] | None) -> Any:
    try:
        _prescan(payload)
        value = RestrictedUnpickler(payload, where, extra).load()
        if check is not None:
            check(value)
        return value
    except ModelFileError:  # UnsafePickleError included: it names the class
        raise
    except ImportError as exc:
        raise ModelFileError(f"{where} needs a module that is not installed ({exc.name})",
                             hint="install edgekit-sb3[host]") from None
    except Exception as exc:  # a damaged pickle fails anywhere inside the unpickler or a constructor
        raise ModelFileError(f"{where} could not be decoded ({type(exc).__name__}: {short_message(exc)})") from None


def short_message(exc: BaseException, limit: int = 160) -> str:
    """An exception's text on one line, cut to ``limit`` characters (errors are one line)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
