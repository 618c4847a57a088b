"""Recipes: small declarative graphs of typed steps, from YAML or Python, checked before anything runs.

A step's `with:` values and the recipe's outputs may hold templates: "${inputs.NAME}" and
"${steps.STEP.FIELD}". A value that is one whole template keeps the referenced value's type (an
artifact reference stays one); inside a longer string it is interpolated as text. Steps run in
dependency order (a topological sort that keeps the written order where it is free); a cycle, an
unknown reference, an unknown step kind, argument or output field, or a type mismatch is refused
at load time with the step named.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidRequestError, NotFoundError
from .steps import BINARY, TYPES, get_step

INPUT_TYPES = ("text", "audio", "image", "video", "document", "number")
_TEMPLATE = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass
class InputSpec:
    name: str
    type: str = "text"
    required: bool = True
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None


@dataclass
class Step:
    name: str
    uses: str
    with_: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str
    steps: list[Step]
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: Path | None = None  # the YAML file it was loaded from
    order: list[Step] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.inputs = {k: _input(k, v) for k, v in self.inputs.items()}
        self.steps = [s if isinstance(s, Step) else _step(s, i) for i, s in enumerate(self.steps)]
        self.order = _validate(self)

    @classmethod
    def from_dict(cls, data: Any, source: Path | None = None) -> Recipe:
        where = f" in {source}" if source else ""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"a recipe is a mapping with name, inputs, steps and outputs{where}",
                                      param="recipe")
        unknown = set(data) - {"name", "description", "inputs", "steps", "outputs"}
        if unknown:
            raise InvalidRequestError(f"recipe{where} has unknown key(s) {', '.join(sorted(unknown))}; "
                                      "use name, description, inputs, steps, outputs", param="recipe")
        for key, kind in (("inputs", dict), ("steps", list), ("outputs", dict)):
            if not isinstance(data.get(key, kind()), kind):
                raise InvalidRequestError(f"recipe{where}: '{key}' must be a {kind.__name__}", param=key)
        return cls(name=data.get("name") or (source.stem if source else ""), steps=data.get("steps") or [],
                   inputs=data.get("inputs") or {}, outputs=data.get("outputs") or {},
                   description=str(data.get("description") or "").strip(), source=source)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for `recipes list` and the API)."""
        return {
            "name": self.name, "description": self.description,
            "inputs": {k: {"type": v.type, "required": v.required, "default": v.default,
                           "description": v.description, **({"choices": v.choices} if v.choices else {})}
                       for k, v in self.inputs.items()},
            "steps": [{"name": s.name, "uses": s.uses, "with": s.with_} for s in self.order],
            "outputs": self.outputs, "source": str(self.source) if self.source else None,
        }


# -- building and checking -------------------------------------------------------------------------
def _input(name: str, spec: Any) -> InputSpec:
    if isinstance(spec, InputSpec):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise InvalidRequestError(f"input '{name}' must be a mapping like {{type: text}}", param=f"inputs.{name}")
    unknown = set(spec) - {"type", "required", "default", "description", "choices"}
    if unknown:
        raise InvalidRequestError(f"input '{name}' has unknown key(s) {', '.join(sorted(unknown))}",
                                  param=f"inputs.{name}")
    required = bool(spec.get("required", "default" not in spec))
    return InputSpec(name, spec.get("type", "text"), required, spec.get("default"),
                     str(spec.get("description") or ""), spec.get("choices"))


def _step(spec: Any, index: int) -> Step:
    if not isinstance(spec, dict):
        raise InvalidRequestError(f"steps[{index}] must be a mapping with name, uses and with", param="steps")
    unknown = set(spec) - {"name", "uses", "with"}
    if unknown:
        raise InvalidRequestError(f"steps[{index}] ({spec.get('name')}) has unknown key(s) "
                                  f"{', '.join(sorted(unknown))}; use name, uses, with", param="steps")
    with_ = spec.get("with") or {}
    if not isinstance(with_, dict):
        raise InvalidRequestError(f"step '{spec.get('name')}': 'with' must be a mapping", param="steps")
    return Step(str(spec.get("name") or ""), str(spec.get("uses") or ""), with_)


def _validate(recipe: Recipe) -> list[Step]:
    if not _RECIPE_NAME.match(recipe.name or ""):
        raise InvalidRequestError(f"recipe name {recipe.name!r} must be lowercase letters, digits, '-' or '_'",
                                  param="name")
    for spec in recipe.inputs.values():
        if spec.type not in INPUT_TYPES:
            raise InvalidRequestError(f"input '{spec.name}' has type {spec.type!r}; use one of "
                                      f"{', '.join(INPUT_TYPES)}", param=f"inputs.{spec.name}")
    if not recipe.steps:
        raise InvalidRequestError(f"recipe '{recipe.name}' has no steps", param="steps")
    names: set[str] = set()
    for i, step in enumerate(recipe.steps):
        if not _NAME.match(step.name):
            raise InvalidRequestError(f"steps[{i}] needs a name of letters, digits, '_' or '-'", param="steps")
        if step.name in names:
            raise InvalidRequestError(f"two steps are named '{step.name}'", param=f"steps.{step.name}")
        names.add(step.name)
    kinds = {}
    for step in recipe.steps:
        try:
            kinds[step.name] = get_step(step.uses)
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"step '{step.name}': {exc.message}", param=f"steps.{step.name}") from None
    deps = {s.name: set() for s in recipe.steps}
    for step in recipe.steps:
        kind = kinds[step.name]
        if kind.params:
            extra = set(step.with_) - set(kind.params)
            if extra:
                raise InvalidRequestError(
                    f"step '{step.name}' ({step.uses}) has no argument(s) {', '.join(sorted(extra))}; "
                    f"it takes {', '.join(kind.params)}", param=f"steps.{step.name}")
            missing = [a for a in kind.required() if a not in step.with_]
            if missing:
                raise InvalidRequestError(f"step '{step.name}' ({step.uses}) needs argument(s) "
                                          f"{', '.join(missing)}", param=f"steps.{step.name}")
        for arg, value in step.with_.items():
            where = f"step '{step.name}', argument '{arg}'"
            got = _check_value(recipe, kinds, value, where, deps[step.name])
            want = kind.params.get(arg, "any").rstrip("?")
            if not _fits(got, want):
                raise InvalidRequestError(f"{where}: expects {want} but gets {got}", param=f"steps.{step.name}")
    for name, value in recipe.outputs.items():
        _check_value(recipe, kinds, value, f"output '{name}'", set())
    return _topo_sort(recipe.steps, deps)


def _fits(got: str, want: str) -> bool:
    if "any" in (got, want):
        return True
    wanted = set(want.split("|"))
    if "text" in wanted:
        wanted.add("number")  # a number reads as text
    return bool(set(got.split("|")) & wanted)


def _check_value(recipe: Recipe, kinds: dict[str, Any], value: Any, where: str, deps: set[str]) -> str:
    """The type `value` will have (for whole-value references; "text"/"number"/"any" else), noting the
    steps it depends on; a bad reference is an error naming `where`."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_value(recipe, kinds, v, f"{where}.{k}", deps)
        return "any"
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(recipe, kinds, v, f"{where}[{i}]", deps)
        return "any"
    if not isinstance(value, str):
        return "number" if isinstance(value, int | float) and not isinstance(value, bool) else "any"
    refs = _TEMPLATE.findall(value)
    types = [_ref_type(recipe, kinds, ref, where, deps) for ref in refs]
    whole = _TEMPLATE.fullmatch(value.strip()) is not None
    if whole:
        return types[0]
    for ref, typ in zip(refs, types):
        if typ in BINARY:
            raise InvalidRequestError(f"{where}: ${{{ref}}} is {typ} and cannot be put inside text; "
                                      "use it as the whole value", param=where)
    return "text"


def _ref_type(recipe: Recipe, kinds: dict[str, Any], ref: str, where: str, deps: set[str]) -> str:
    parts = ref.strip().split(".")
    if parts[0] == "inputs" and len(parts) == 2:
        spec = recipe.inputs.get(parts[1])
        if spec is None:
            raise InvalidRequestError(f"{where}: ${{{ref}}} names no input; inputs are "
                                      f"{', '.join(recipe.inputs) or 'none'}", param=where)
        return spec.type
    if parts[0] == "steps" and len(parts) >= 3:
        kind = kinds.get(parts[1])
        if kind is None:
            raise InvalidRequestError(f"{where}: ${{{ref}}} names no step; steps are "
                                      f"{', '.join(kinds)}", param=where)
        deps.add(parts[1])
        if kind.outputs and parts[2] not in kind.outputs:
            raise InvalidRequestError(f"{where}: step '{parts[1]}' ({kind.name}) gives no '{parts[2]}'; "
                                      f"it gives {', '.join(kind.outputs)}", param=where)
        return kind.outputs.get(parts[2], "any") if len(parts) == 3 else "any"
    raise InvalidRequestError(f"{where}: ${{{ref}}} is not a reference; use ${{inputs.NAME}} or "
                              "${steps.STEP.FIELD}", param=where)


def _topo_sort(steps: list[Step], deps: dict[str, set[str]]) -> list[Step]:
    order: list[Step] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = next((s for s in pending if deps[s.name] <= done), None)
        if ready is None:
            raise InvalidRequestError(f"steps depend on each other in a cycle: {_cycle(deps, pending)}",
                                      param=f"steps.{pending[0].name}")
        order.append(ready)
        done.add(ready.name)
        pending.remove(ready)
    return order


def _cycle(deps: dict[str, set[str]], pending: list[Step]) -> str:
    left = {s.name for s in pending}
    path = [pending[0].name]
    while True:
        nxt = min(deps[path[-1]] & left)
        if nxt in path:
            return " -> ".join([*path[path.index(nxt):], nxt])
        path.append(nxt)


# -- templates at run time --------------------------------------------------------------------------
def resolve(value: Any, context: dict[str, Any]) -> Any:
    """`value` with its templates replaced from {"inputs": {...}, "steps": {name: output}}."""
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), context)
    return _TEMPLATE.sub(lambda m: _as_text(_lookup(m.group(1), context)), value)


def _lookup(ref: str, context: dict[str, Any]) -> Any:
    node: Any = context
    for part in ref.strip().split("."):
        if not isinstance(node, dict) or part not in node:
            if ref.startswith("inputs."):
                return None  # an optional input left out
            raise InvalidRequestError(f"${{{ref}}} has no value (its step has not run or gave no such field)",
                                      param=ref)
        node = node[part]
    return node


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


# -- finding recipes --------------------------------------------------------------------------------
def load_recipe(path: Path) -> Recipe:
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no recipe file at {path}", param="recipe") from None
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"recipe {path} is not valid YAML: {exc}", param="recipe") from None
    return Recipe.from_dict(data, source=path)


def _folder(folder: Path) -> dict[str, Recipe]:
    out: dict[str, Recipe] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        recipe = load_recipe(path)
        out[recipe.name] = recipe
    return out


def builtin_recipes() -> dict[str, Recipe]:
    """The recipes that ship in the package, by name."""
    with resources.as_file(resources.files("omniforge.pipelines") / "recipes") as folder:
        return _folder(Path(folder))


def user_recipes(home: Path) -> dict[str, Recipe]:
    """<home>/recipes/*.yaml, by name (a broken one is an error naming its file)."""
    folder = Path(home) / "recipes"
    return _folder(folder) if folder.is_dir() else {}


def all_recipes(home: Path | None = None) -> dict[str, Recipe]:
    """Built-in recipes, then the user's (a user recipe with a built-in's name replaces it)."""
    return {**builtin_recipes(), **(user_recipes(home) if home else {})}


def find_recipe(name_or_path: str | Path, home: Path | None = None) -> Recipe:
    """A recipe by file path (anything ending .yaml/.yml or an existing file) or by name."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or Path(text).expanduser().is_file():
        return load_recipe(Path(text))
    if home is not None:
        for suffix in (".yaml", ".yml"):
            path = Path(home) / "recipes" / f"{text}{suffix}"
            if path.is_file():
                return load_recipe(path)
    found = (user_recipes(home).get(text) if home is not None else None) or builtin_recipes().get(text)
    if found is None:
        known = sorted(all_recipes(home))
        raise NotFoundError(f"no recipe named '{text}'; known: {', '.join(known)}", param="recipe")
    return found


__all__ = ["INPUT_TYPES", "TYPES", "InputSpec", "Recipe", "Step", "all_recipes", "builtin_recipes",
           "find_recipe", "load_recipe", "resolve", "user_recipes"]
