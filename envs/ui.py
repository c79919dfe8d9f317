"""Generated UI activity clips (UI-JEPA, arXiv 2409.04081): a phone screen driven by a scripted user.

The authors released only their recordings, so the clips are made here: a small state machine of
screens (home grid, settings with toggles and level buttons, contacts with a search field and a
keyboard, a contact's action buttons, clock alarm/timer pickers, a shop and its list, maps, notes,
mail, camera) in randomised styles (theme, accent, row height, icon order), driven by a script of
low-level actions (tap a widget, scroll a list, type on the keyboard) that realises one intent from
`TEMPLATES`. Each clip is labelled with its template (`intent`), its sentence (`intent_tokens`,
words of `vocabulary()`) and its slot values (`intent_slots`). A tap is drawn as a dot where the finger
lands, as screen recordings with "show taps" do; slot values are visible as identity colours (avatars,
item chips, setting chips, picker buttons), since no text is legible at 32 pixels.

Splits (`group` per clip): 0 seen templates and slot values; 1 zero-shot: a (template, slot value)
combination kept out of training, each of its words seen elsewhere in training; 2 few-shot templates
(`few_shot` clips each in train); 3 templates never in train. The script replays on
`replay(initial, script)` and `intent_holds` checks the final state against the label.
"""
from __future__ import annotations

import colorsys
import copy
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from envs.cache import (
    clip_rng,
    config_fingerprint,
    dataset_dir,
    ensure_dataset,
    load_split,
    write_dataset,
)

GENERATOR_VERSION = 1
MAKE_HINT = "jepa data make ui_activity"

# --- the intent catalogue -------------------------------------------------------------------------
SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "setting": ("wifi", "bluetooth", "airplane", "dark", "location", "silent"),
    "level": ("low", "medium", "high"),
    "name": ("anna", "bob", "carl", "dana", "eve", "finn", "gus", "hana"),
    "hour": ("5", "6", "7", "8", "9", "10"),
    "minute": ("00", "15", "30", "45"),
    "minutes": ("1", "2", "3", "5", "10", "20"),
    "item": ("milk", "eggs", "bread", "apples", "rice", "coffee"),
    "place": ("home", "work", "school", "park", "gym"),
    "app": ("camera", "maps", "mail", "notes", "clock", "shop"),
}


@dataclass(frozen=True)
class Template:
    """One intent: its sentence with `{slot}` holes, in order."""

    name: str
    sentence: str

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.sentence))

    def fill(self, values: tuple[str, ...]) -> str:
        return self.sentence.format(**dict(zip(self.slots, values)))


TEMPLATES: tuple[Template, ...] = tuple(Template(n, s) for n, s in (
    ("turn_on", "turn on {setting}"),
    ("turn_off", "turn off {setting}"),
    ("set_volume", "set volume to {level}"),
    ("set_brightness", "set brightness to {level}"),
    ("call", "call {name}"),
    ("message", "send a message to {name}"),
    ("search_contacts", "search contacts for {name}"),
    ("favourite", "add {name} to favourites"),
    ("delete_contact", "delete contact {name}"),
    ("block", "block {name}"),
    ("share_location", "share my location with {name}"),
    ("mail", "send an email to {name}"),
    ("alarm", "set an alarm for {hour} {minute}"),
    ("timer", "start a timer for {minutes} minutes"),
    ("add_to_list", "add {item} to the shopping list"),
    ("remove_from_list", "remove {item} from the shopping list"),
    ("clear_list", "clear the shopping list"),
    ("buy", "buy {item}"),
    ("search_store", "search the store for {item}"),
    ("note", "write a note about {item}"),
    ("directions", "show directions to {place}"),
    ("open_app", "open {app}"),
    ("go_home", "go to the home screen"),
))
TEMPLATE_NAMES = tuple(t.name for t in TEMPLATES)
GROUPS = ("seen", "zero_shot", "few_shot", "unseen_template")
SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2
MAX_SLOTS = 2


class UIError(ValueError):
    """A bad UI data request (unknown template, impossible split); the message ends with its fix."""


def template(name: str) -> Template:
    for t in TEMPLATES:
        if t.name == name:
            return t
    raise UIError(f"error: unknown intent template {name!r}. Fix: use one of {', '.join(TEMPLATE_NAMES)}")


def vocabulary(templates: tuple[Template, ...] = TEMPLATES) -> tuple[str, ...]:
    """The decoder's words: specials, then every word of every template filled with every slot value."""
    words = sorted({w for t in templates for w in re.sub(r"\{\w+\}", " ", t.sentence).split()}
                   | {v for t in templates for s in t.slots for v in SLOT_VALUES[s]})
    if not words:
        raise UIError("error: the intent vocabulary is empty (no templates given). Fix: pass at least one template of envs.ui.TEMPLATES")
    return SPECIALS + tuple(words)


def max_length(templates: tuple[Template, ...] = TEMPLATES) -> int:
    """Longest sentence in tokens, plus <bos> and <eos>."""
    return max(len(t.fill(tuple(SLOT_VALUES[s][0] for s in t.slots)).split()) for t in templates) + 2


def encode(sentence: str, vocab: tuple[str, ...], length: int) -> np.ndarray:
    index = {w: i for i, w in enumerate(vocab)}
    ids = [BOS, *(index[w] for w in sentence.split()), EOS]
    return np.array(ids + [PAD] * (length - len(ids)), dtype=np.int64)


def decode(ids, vocab: tuple[str, ...]) -> list[str]:
    """Words up to the first <eos>, specials dropped."""
    out = []
    for i in ids:
        if int(i) == EOS:
            break
        if int(i) >= len(SPECIALS):
            out.append(vocab[int(i)])
    return out


# --- the data config and its splits -----------------------------------------------------------------
@dataclass
class UIConfig:
    """Everything that determines the UI activity dataset, bit for bit."""

    num_train: int = 1536
    num_val: int = 640
    frames: int = 8
    size: int = 32
    few_shot: int = 4  # train clips per few-shot template
    few_shot_templates: tuple[str, ...] = ("block", "buy", "note")
    unseen_templates: tuple[str, ...] = ("share_location", "search_store", "set_brightness")
    seed: int = 0
    shard_size: int = 512

    def fingerprint(self) -> str:
        return config_fingerprint(self, GENERATOR_VERSION)


def problems(cfg) -> list[tuple[str, bool, str]]:
    """(key, ok, what is wrong and the fix) for each constraint on a UI config."""
    held = [*cfg.few_shot_templates, *cfg.unseen_templates]
    unknown = {key: [n for n in getattr(cfg, key) if n not in TEMPLATE_NAMES] for key in ("few_shot_templates", "unseen_templates")}
    return [
        *((key, not names, f"names unknown intent template(s) {names}; use some of {', '.join(TEMPLATE_NAMES)}")
          for key, names in unknown.items()),
        ("unseen_templates", len(set(held)) == len(held), "shares a template with data.few_shot_templates; a template is in one split"),
        ("num_train", cfg.num_train >= 1 and cfg.num_val >= 1, "and data.num_val must be >= 1"),
        ("few_shot", 0 <= cfg.few_shot * len(cfg.few_shot_templates) <= cfg.num_train, "clips per few-shot template must fit in data.num_train"),
        ("frames", cfg.frames >= 2, f"is {cfg.frames}; a clip needs at least 2 frames to show an action"),
        ("size", cfg.size >= 16, f"is {cfg.size}; use at least 16 pixels"),
        ("seed", cfg.seed >= 0, "must be >= 0"),
    ]


def check(cfg) -> None:
    for key, ok, fix in problems(cfg):
        if not ok:
            raise UIError(f"error: data.{key} {fix}. Fix: change data.{key}")


@dataclass(frozen=True)
class Splits:
    """Which templates are seen / few-shot / unseen, and the zero-shot slot tuples of each seen template."""

    seen: tuple[str, ...]
    few_shot: tuple[str, ...]
    unseen: tuple[str, ...]
    reserved: dict[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)

    def group_of(self, name: str, values: tuple[str, ...]) -> int:
        if name in self.unseen:
            return 3
        if name in self.few_shot:
            return 2
        return 1 if values in self.reserved.get(name, frozenset()) else 0

    def combos(self, name: str, zero_shot: bool) -> list[tuple[str, ...]]:
        """Every slot tuple of `name`, kept to its reserved ones (zero_shot) or to the rest."""
        slots = template(name).slots
        grids = np.meshgrid(*[np.arange(len(SLOT_VALUES[s])) for s in slots], indexing="ij") if slots else []
        rows = zip(*[g.ravel() for g in grids]) if slots else [()]
        every = [tuple(SLOT_VALUES[s][i] for s, i in zip(slots, row)) for row in rows]
        reserved = self.reserved.get(name, frozenset())
        return [c for c in every if (c in reserved) == zero_shot]


def splits(cfg) -> Splits:
    """Held-out templates from the config; zero-shot combinations so that every value stays seen in training.

    A single-slot template reserves one value, rotating across the seen templates sharing its slot type
    (so a value reserved in one is trained in another); types only one seen template uses reserve nothing;
    the alarm reserves (hour, minute) pairs whose hour and minute each appear in other pairs.
    """
    check(cfg)
    held = set(cfg.few_shot_templates) | set(cfg.unseen_templates)
    seen = tuple(n for n in TEMPLATE_NAMES if n not in held)
    reserved: dict[str, frozenset] = {}
    by_type: dict[str, list[str]] = {}
    for n in seen:
        slots = template(n).slots
        if len(slots) == 1:
            by_type.setdefault(slots[0], []).append(n)
    for slot, names in by_type.items():
        if len(names) >= 2:
            for j, n in enumerate(names):
                reserved[n] = frozenset({(SLOT_VALUES[slot][j % len(SLOT_VALUES[slot])],)})
    if "alarm" in seen:
        hours, minutes = SLOT_VALUES["hour"], SLOT_VALUES["minute"]
        reserved["alarm"] = frozenset((h, m) for i, h in enumerate(hours) for k, m in enumerate(minutes) if (i + k) % 4 == 0)
    return Splits(seen, tuple(cfg.few_shot_templates), tuple(cfg.unseen_templates), reserved)


def clip_plan(cfg, split: str, index: int, rng: np.random.Generator, parts: Splits) -> tuple[str, tuple[str, ...], int]:
    """(template, slot values, group) of clip `index`: train = few-shot clips first, then seen combinations;
    val cycles seen, seen, zero-shot, few-shot, unseen template (any prefix is balanced)."""
    if split == "train":
        n_few = cfg.few_shot * len(parts.few_shot)
        if index < n_few:
            name, zero = parts.few_shot[index // cfg.few_shot], False
        else:
            name, zero = parts.seen[int(rng.integers(len(parts.seen)))], False
    else:
        group = (0, 0, 1, 2, 3)[index % 5]
        pool = {0: parts.seen, 1: [n for n in parts.seen if parts.reserved.get(n)], 2: parts.few_shot, 3: parts.unseen}[group]
        pool = pool or parts.seen  # no held-out templates configured: fall back to seen ones
        name = pool[int(rng.integers(len(pool)))]
        zero = group == 1 and bool(parts.reserved.get(name))
    combos = parts.combos(name, zero)
    values = combos[int(rng.integers(len(combos)))]
    return name, values, parts.group_of(name, values)


# --- the screen state machine ----------------------------------------------------------------------
APPS = ("settings", "contacts", "clock", "shop", "maps", "notes", "mail", "camera")
SETTING_ROWS = [("toggle", s) for s in SLOT_VALUES["setting"]] + [("level", "volume"), ("level", "brightness")]
KEY_ROWS = ("abcdefghij", "klmnopqrs", "tuvwxyz")
CONTENT_TOP, CONTENT_BOTTOM = 0.08, 0.88
KEYBOARD_TOP = 0.62


class ScriptError(ValueError):
    """An action the current screen cannot perform (a tap on a widget that is not shown)."""


@dataclass(frozen=True)
class Widget:
    id: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1]
    colour: tuple[int, int, int]
    mark: tuple[int, int, int] | None = None  # a small inner square: toggle on, selection, ...


def _hue(i: int, n: int, light: float = 0.85) -> tuple[int, int, int]:
    """n well-separated identity colours."""
    r, g, b = colorsys.hsv_to_rgb((i / n) % 1.0, 0.75, light)
    return int(r * 255), int(g * 255), int(b * 255)


IDENTITY = {kind: {v: _hue(i, len(vals), 0.55 + 0.4 * ((i * 7) % 3) / 2) for i, v in enumerate(vals)} for kind, vals in SLOT_VALUES.items()}
APP_COLOURS = {a: _hue(i, len(APPS)) for i, a in enumerate(APPS)}
LETTER_COLOURS = {c: _hue(i, 26, 0.6 + 0.4 * (i % 2)) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
BUTTONS = {b: _hue(i, 8, 0.7) for i, b in enumerate(("call", "message", "favourite", "delete", "block", "share", "send", "save"))}


def random_style(rng: np.random.Generator) -> dict:
    """Theme, accent, row height and icon order of one clip."""
    dark = bool(rng.random() < 0.5)
    base = int(rng.integers(20, 60)) if dark else int(rng.integers(200, 245))
    return {"background": (base, base, base + int(rng.integers(-10, 10))), "ink": (230, 230, 230) if dark else (40, 40, 40),
            "accent": tuple(int(c) for c in rng.integers(60, 255, 3)), "row": float(rng.uniform(0.13, 0.17)),
            "icons": [int(i) for i in rng.permutation(9)]}


def initial_state(rng: np.random.Generator, name: str, values: tuple[str, ...]) -> dict:
    """A home screen (or, for go_home, some app) with random settings and list, set so the intent has work to do."""
    settings = {s: bool(rng.random() < 0.5) for s in SLOT_VALUES["setting"]}
    items = [i for i in SLOT_VALUES["item"] if rng.random() < 0.4]
    if name in ("turn_on", "turn_off"):
        settings[values[0]] = name == "turn_off"
    if name == "add_to_list" and values[0] in items:
        items.remove(values[0])
    if name in ("remove_from_list", "clear_list") and not items:
        items.append(SLOT_VALUES["item"][int(rng.integers(6))])
    if name == "remove_from_list" and values[0] not in items:
        items.append(values[0])
    levels = {k: SLOT_VALUES["level"][int(rng.integers(3))] for k in ("volume", "brightness")}
    if name in ("set_volume", "set_brightness"):  # never already at the asked level
        levels[name.split("_")[1]] = next(lv for lv in SLOT_VALUES["level"] if lv != values[0])
    state = {"screen": "home", "scroll": 0, "text": "", "keyboard": False, "pick": {}, "settings": settings,
             "levels": levels, "list": items, "facts": {}, "style": random_style(rng)}
    if name == "go_home":
        state["screen"] = APPS[int(rng.integers(len(APPS)))]
    return state


def _rows(state: dict) -> tuple[list[str], int]:
    """The scrolling rows of the current screen (ids) and how many fit."""
    bottom = KEYBOARD_TOP if state["keyboard"] else CONTENT_BOTTOM
    screen, text = state["screen"], state["text"]
    top = CONTENT_TOP + (state["style"]["row"] if screen in ("contacts", "shop", "list") else 0)
    fit = max(1, int((bottom - top) // state["style"]["row"]))
    rows = {"settings": [f"{k}:{s}" for k, s in SETTING_ROWS],
            "contacts": [f"row:{n}" for n in SLOT_VALUES["name"] if n.startswith(text)],
            "mail_to": [f"row:{n}" for n in SLOT_VALUES["name"]],
            "shop": [f"row:{i}" for i in SLOT_VALUES["item"] if i.startswith(text)],
            "list": [f"remove:{i}" for i in state["list"]],
            "maps": [f"row:{p}" for p in SLOT_VALUES["place"]]}.get(screen, [])
    return rows, fit


def _grid(ids: list[str], colours: list, top: float, bottom: float, cols: int, marks=None) -> list[Widget]:
    rows = -(-len(ids) // cols)
    h, w = (bottom - top) / max(rows, 1), 0.9 / cols
    return [Widget(i, (0.05 + (k % cols) * w + 0.01, top + (k // cols) * h + 0.01, 0.05 + (k % cols + 1) * w - 0.01,
                       top + (k // cols + 1) * h - 0.01), c, (marks or {}).get(i)) for k, (i, c) in enumerate(zip(ids, colours))]


def widgets(state: dict) -> list[Widget]:
    """Every tappable thing on the current screen, where it is and how it looks (rendering and taps share it)."""
    style, screen = state["style"], state["screen"]
    out = [Widget("nav:back", (0.1, 0.9, 0.35, 0.98), style["ink"]), Widget("nav:home", (0.4, 0.9, 0.6, 0.98), style["accent"])]
    if screen == "home":
        slots = [APPS[i] if i < len(APPS) else None for i in style["icons"]]
        return out + [w for w in _grid([f"app:{a}" for a in slots], [APP_COLOURS.get(a, style["background"]) for a in slots], 0.15, 0.8, 3)
                      if not w.id.endswith("None")]
    if screen in ("contacts", "shop") or state["keyboard"]:
        field_colour = tuple(min(255, c + 40) for c in style["background"])
        out.append(Widget("field:search", (0.05, CONTENT_TOP + 0.01, 0.95, CONTENT_TOP + style["row"] - 0.01), field_colour))
    if screen in ("shop", "list"):
        out += [Widget("tab:store", (0.05, 0.02, 0.45, 0.07), style["accent"] if screen == "shop" else style["ink"]),
                Widget("tab:list", (0.55, 0.02, 0.95, 0.07), style["accent"] if screen == "list" else style["ink"])]
    rows, fit = _rows(state)
    top = CONTENT_TOP + (style["row"] if screen in ("contacts", "shop", "list") else 0)
    for k, rid in enumerate(rows[state["scroll"]: state["scroll"] + fit]):
        y0, y1 = top + k * style["row"] + 0.01, top + (k + 1) * style["row"] - 0.01
        kind, value = rid.split(":")
        if kind == "toggle":
            on = state["settings"][value]
            out += [Widget(f"chip:{value}", (0.05, y0, 0.3, y1), IDENTITY["setting"][value]),
                    Widget(rid, (0.65, y0, 0.95, y1), style["accent"] if on else (128, 128, 128), (255, 255, 255) if on else None)]
        elif kind == "level":
            out.append(Widget(f"chip:{value}", (0.05, y0, 0.3, y1), APP_COLOURS["settings"] if value == "volume" else (250, 220, 60)))
            out += [Widget(f"level:{value}:{lv}", (0.35 + j * 0.2, y0, 0.53 + j * 0.2, y1), IDENTITY["level"][lv],
                           style["accent"] if state["levels"][value] == lv else None) for j, lv in enumerate(SLOT_VALUES["level"])]
        else:
            kinds = {"row": {"contacts": "name", "mail_to": "name", "shop": "item", "maps": "place"}.get(screen), "remove": "item"}
            out.append(Widget(rid if kind == "row" else f"listitem:{value}", (0.05, y0, 0.95 if kind == "row" else 0.75, y1),
                              IDENTITY[kinds[kind]][value]))
            if kind == "remove":
                out.append(Widget(f"remove:{value}", (0.78, y0, 0.95, y1), BUTTONS["delete"]))
    if screen == "contact":
        name = state["pick"]["name"]
        out.append(Widget("avatar", (0.3, 0.12, 0.7, 0.4), IDENTITY["name"][name]))
        acts = ["call", "message", "favourite", "delete", "block", "share"]
        out += _grid([f"btn:{a}" for a in acts], [BUTTONS[a] for a in acts], 0.45, 0.85, 3)
    elif screen in ("compose", "mail_compose"):
        out += [Widget("avatar", (0.05, 0.1, 0.3, 0.25), IDENTITY["name"][state["pick"]["name"]]),
                Widget("btn:send", (0.6, 0.7, 0.95, 0.85), BUTTONS["send"])]
    elif screen == "mail":
        out.append(Widget("btn:compose", (0.6, 0.7, 0.95, 0.85), APP_COLOURS["mail"]))
    elif screen == "item":
        item = state["pick"]["item"]
        out += [Widget("avatar", (0.3, 0.12, 0.7, 0.4), IDENTITY["item"][item]),
                Widget("btn:add", (0.05, 0.5, 0.45, 0.65), BUTTONS["save"]), Widget("btn:buy", (0.55, 0.5, 0.95, 0.65), BUTTONS["send"])]
    elif screen == "list":
        out.append(Widget("btn:clear", (0.6, 0.8, 0.95, 0.88), BUTTONS["delete"]))
    elif screen in ("alarm", "timer"):
        out += [Widget("tab:alarm", (0.05, 0.02, 0.45, 0.07), style["accent"] if screen == "alarm" else style["ink"]),
                Widget("tab:timer", (0.55, 0.02, 0.95, 0.07), style["accent"] if screen == "timer" else style["ink"])]
        pick = state["pick"]
        if screen == "alarm":
            hours, minutes = SLOT_VALUES["hour"], SLOT_VALUES["minute"]
            out += _grid([f"hour:{h}" for h in hours], [IDENTITY["hour"][h] for h in hours], 0.1, 0.4, 3,
                         {f"hour:{pick.get('hour')}": style["ink"]})
            out += _grid([f"minute:{m}" for m in minutes], [IDENTITY["minute"][m] for m in minutes], 0.45, 0.6, 4,
                         {f"minute:{pick.get('minute')}": style["ink"]})
            out.append(Widget("btn:save", (0.6, 0.7, 0.95, 0.85), BUTTONS["save"]))
        else:
            mins = SLOT_VALUES["minutes"]
            out += _grid([f"minutes:{m}" for m in mins], [IDENTITY["minutes"][m] for m in mins], 0.1, 0.5, 3,
                         {f"minutes:{pick.get('minutes')}": style["ink"]})
            out.append(Widget("btn:start", (0.6, 0.7, 0.95, 0.85), BUTTONS["save"]))
    elif screen == "notes":
        out.append(Widget("btn:new", (0.6, 0.7, 0.95, 0.85), APP_COLOURS["notes"]))
    elif screen == "editor":
        out.append(Widget("btn:save", (0.6, 0.45, 0.95, 0.58), BUTTONS["save"]))
    if state["keyboard"]:
        for r, letters in enumerate(KEY_ROWS):
            h = (0.88 - KEYBOARD_TOP) / 4
            out += [Widget(f"key:{c}", (0.02 + k * 0.096, KEYBOARD_TOP + r * h, 0.02 + (k + 1) * 0.096 - 0.006, KEYBOARD_TOP + (r + 1) * h - 0.006),
                           LETTER_COLOURS[c]) for k, c in enumerate(letters)]
        out.append(Widget("key:enter", (0.7, KEYBOARD_TOP + 3 * (0.88 - KEYBOARD_TOP) / 4, 0.98, 0.88), style["accent"]))
    return out


APP_SCREENS = {"settings": "settings", "contacts": "contacts", "clock": "alarm", "shop": "shop", "maps": "maps",
               "notes": "notes", "mail": "mail", "camera": "camera"}


def _open(state: dict, screen: str, **pick) -> None:
    state.update(screen=screen, scroll=0, text="", keyboard=screen == "editor", pick=pick)


def apply(state: dict, action: tuple) -> dict:
    """The state after one action: ("tap", widget id), ("scroll", rows) or ("type", letter) — a tap on a key."""
    state = copy.deepcopy(state)
    kind, arg = action
    if kind == "scroll":
        rows, fit = _rows(state)
        state["scroll"] = int(np.clip(state["scroll"] + arg, 0, max(0, len(rows) - fit)))
        return state
    if kind == "type":
        arg = f"key:{arg}"
    shown = {w.id for w in widgets(state)}
    if arg not in shown:
        raise ScriptError(f"tap on {arg!r}, which screen {state['screen']!r} does not show")
    what, _, value = arg.partition(":")
    screen, facts = state["screen"], state["facts"]
    if arg == "nav:home":
        _open(state, "home")
    elif arg == "nav:back":
        back = {"contact": "contacts", "compose": "contact", "item": "shop", "mail_to": "mail", "mail_compose": "mail_to", "editor": "notes"}
        _open(state, back.get(screen, "home"), **({"name": state["pick"]["name"]} if screen == "compose" else {}))
    elif what == "app":
        _open(state, APP_SCREENS[value])
    elif what == "tab":
        _open(state, {"store": "shop", "list": "list", "alarm": "alarm", "timer": "timer"}[value])
    elif what == "field":
        state["keyboard"] = True
    elif what == "key":
        if value == "enter":
            facts[{"contacts": "searched_contacts", "shop": "searched_store"}.get(screen, "entered")] = state["text"]
            state["keyboard"] = screen == "editor"
        else:
            state["text"] += value
            state["scroll"] = 0
    elif what == "toggle":
        state["settings"][value] = not state["settings"][value]
    elif what == "level":
        which, level = value.split(":")
        state["levels"][which] = level
    elif what == "row":
        if screen in ("contacts", "mail_to"):
            _open(state, "contact" if screen == "contacts" else "mail_compose", name=value)
        elif screen == "shop":
            _open(state, "item", item=value)
        elif screen == "maps":
            facts["directions"] = value
    elif what == "remove":
        state["list"].remove(value)
    elif what in ("hour", "minute", "minutes"):
        state["pick"][what] = value
    elif what == "btn":
        _button(state, value)
    return state


def _button(state: dict, button: str) -> None:
    screen, facts, pick = state["screen"], state["facts"], state["pick"]
    if screen == "contact":
        if button == "message":
            _open(state, "compose", name=pick["name"])
            return
        facts[{"call": "called", "favourite": "favourite", "delete": "deleted", "block": "blocked", "share": "shared_location"}[button]] = pick["name"]
        if button == "delete":
            _open(state, "contacts")
    elif screen in ("compose", "mail_compose"):
        facts["messaged" if screen == "compose" else "mailed"] = pick["name"]
        _open(state, "contacts" if screen == "compose" else "mail")
    elif button == "compose":
        _open(state, "mail_to")
    elif screen == "item":
        if button == "add" and pick["item"] not in state["list"]:
            state["list"].append(pick["item"])
        if button == "buy":
            facts["bought"] = pick["item"]
    elif button == "clear":
        state["list"].clear()
    elif screen == "alarm" and {"hour", "minute"} <= set(pick):
        facts["alarm"] = f"{pick['hour']} {pick['minute']}"
    elif screen == "timer" and "minutes" in pick:
        facts["timer"] = pick["minutes"]
    elif button == "new":
        _open(state, "editor")
    elif screen == "editor" and button == "save":
        facts["note"] = state["text"]
        _open(state, "notes")


def replay(initial: dict, script: list[tuple]) -> list[dict]:
    """Every state from `initial` through each action of `script` (raises ScriptError on an impossible tap)."""
    states = [initial]
    for action in script:
        states.append(apply(states[-1], action))
    return states


def intent_holds(name: str, values: tuple[str, ...], state: dict) -> bool:
    """Whether `state` shows the intent (template `name` with slot `values`) done; independent of any script."""
    v = dict(zip(template(name).slots, values))
    facts = state["facts"]
    checks = {
        "turn_on": lambda: state["settings"][v.get("setting", "")] is True,
        "turn_off": lambda: state["settings"][v.get("setting", "")] is False,
        "set_volume": lambda: state["levels"]["volume"] == v["level"],
        "set_brightness": lambda: state["levels"]["brightness"] == v["level"],
        "call": lambda: facts.get("called") == v["name"],
        "message": lambda: facts.get("messaged") == v["name"],
        "search_contacts": lambda: facts.get("searched_contacts") == v["name"],
        "favourite": lambda: facts.get("favourite") == v["name"],
        "delete_contact": lambda: facts.get("deleted") == v["name"],
        "block": lambda: facts.get("blocked") == v["name"],
        "share_location": lambda: facts.get("shared_location") == v["name"],
        "mail": lambda: facts.get("mailed") == v["name"],
        "alarm": lambda: facts.get("alarm") == f"{v['hour']} {v['minute']}",
        "timer": lambda: facts.get("timer") == v["minutes"],
        "add_to_list": lambda: v["item"] in state["list"],
        "remove_from_list": lambda: v["item"] not in state["list"],
        "clear_list": lambda: not state["list"],
        "buy": lambda: facts.get("bought") == v["item"],
        "search_store": lambda: facts.get("searched_store") == v["item"],
        "note": lambda: facts.get("note") == v["item"],
        "directions": lambda: facts.get("directions") == v["place"],
        "open_app": lambda: state["screen"] == APP_SCREENS[v["app"]],
        "go_home": lambda: state["screen"] == "home",
    }
    template(name)
    return bool(checks[name]())


# --- the scripted user ---------------------------------------------------------------------------
class _User:
    """Builds a script by acting on the state machine: navigates, scrolls to rows, types words."""

    def __init__(self, state: dict):
        self.state, self.script = state, []

    def do(self, kind: str, arg) -> None:
        self.state = apply(self.state, (kind, arg))
        self.script.append((kind, arg))

    def scroll_to(self, row: str) -> None:
        """Scroll the list just far enough that `row` is shown (no action if it already is)."""
        rows, fit = _rows(self.state)
        if row in rows:
            at, first = rows.index(row), self.state["scroll"]
            if not first <= at < first + fit:
                self.do("scroll", at - fit + 1 - first if at >= first + fit else at - first)

    def tap(self, wid: str) -> None:
        self.scroll_to(wid)
        self.do("tap", wid)

    def open(self, app: str) -> None:
        if self.state["screen"] != "home":
            self.tap("nav:home")
        self.tap(f"app:{app}")

    def type(self, word: str) -> None:
        self.tap("field:search")
        for c in word:
            self.do("type", c)
        self.do("type", "enter")


def script_for(name: str, values: tuple[str, ...], state: dict) -> list[tuple]:
    """The actions a user takes from `state` to realise the intent."""
    v = dict(zip(template(name).slots, values))
    u = _User(state)
    contact_button = {"call": "call", "message": "message", "favourite": "favourite", "delete_contact": "delete",
                      "block": "block", "share_location": "share"}
    if name in ("turn_on", "turn_off"):
        u.open("settings")
        u.tap(f"toggle:{v['setting']}")
    elif name in ("set_volume", "set_brightness"):
        which = name.split("_")[1]
        u.open("settings")
        u.scroll_to(f"level:{which}")
        u.tap(f"level:{which}:{v['level']}")
    elif name in contact_button:
        u.open("contacts")
        u.tap(f"row:{v['name']}")
        u.tap(f"btn:{contact_button[name]}")
        if name == "message":
            u.tap("btn:send")
    elif name == "search_contacts":
        u.open("contacts")
        u.type(v["name"])
    elif name == "mail":
        u.open("mail")
        u.tap("btn:compose")
        u.tap(f"row:{v['name']}")
        u.tap("btn:send")
    elif name == "alarm":
        u.open("clock")
        u.tap(f"hour:{v['hour']}")
        u.tap(f"minute:{v['minute']}")
        u.tap("btn:save")
    elif name == "timer":
        u.open("clock")
        u.tap("tab:timer")
        u.tap(f"minutes:{v['minutes']}")
        u.tap("btn:start")
    elif name in ("add_to_list", "buy"):
        u.open("shop")
        u.tap(f"row:{v['item']}")
        u.tap("btn:add" if name == "add_to_list" else "btn:buy")
    elif name == "remove_from_list":
        u.open("shop")
        u.tap("tab:list")
        u.tap(f"remove:{v['item']}")
    elif name == "clear_list":
        u.open("shop")
        u.tap("tab:list")
        u.tap("btn:clear")
    elif name == "search_store":
        u.open("shop")
        u.type(v["item"])
    elif name == "note":
        u.open("notes")
        u.tap("btn:new")
        for c in v["item"]:
            u.do("type", c)
        u.tap("btn:save")
    elif name == "directions":
        u.open("maps")
        u.tap(f"row:{v['place']}")
    elif name == "open_app":
        u.open(v["app"])
    elif name == "go_home":
        u.tap("nav:home")
    return u.script


# --- drawing -------------------------------------------------------------------------------------
def render(state: dict, size: int, tap: str | None = None) -> np.ndarray:
    """One frame uint8 [size, size, 3]: drawn at 4x with Pillow, box-filtered down; `tap` marks the widget about to be tapped."""
    style, big = state["style"], size * 4
    image = Image.new("RGB", (big, big), tuple(int(c) for c in np.clip(style["background"], 0, 255)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, big, int(0.06 * big)), fill=APP_COLOURS.get(next((a for a, s in APP_SCREENS.items() if s == state["screen"]), ""), style["accent"]))
    draw.rectangle((0, int(0.89 * big), big, big), fill=tuple(max(0, c - 30) for c in style["background"]))
    shown = widgets(state)
    for w in shown:
        box = [round(c * big) for c in w.box]
        draw.rectangle(box, fill=w.colour)
        if w.mark is not None:
            cx, cy, r = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2, max(1, (box[3] - box[1]) // 4)
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=w.mark)
    if state["text"]:  # typed letters as coloured ticks in the field (or the editor's page)
        y0 = int((CONTENT_TOP + 0.02) * big) if state["screen"] != "editor" else int(0.2 * big)
        for k, c in enumerate(state["text"][:8]):
            x0 = int((0.08 + k * 0.1) * big)
            draw.rectangle((x0, y0, x0 + int(0.07 * big), y0 + int(0.08 * big)), fill=LETTER_COLOURS[c])
    if tap is not None:
        w = next((w for w in shown if w.id == tap), None)
        if w is not None:
            cx, cy, r = (w.box[0] + w.box[2]) / 2 * big, (w.box[1] + w.box[3]) / 2 * big, 0.06 * big
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255), outline=(0, 0, 0), width=max(1, size // 16))
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


@dataclass
class Clip:
    """One generated clip with what made it, so its script can be replayed."""

    video: np.ndarray  # uint8 [T, size, size, 3]
    template: str
    values: tuple[str, ...]
    group: int
    sentence: str
    initial: dict
    script: list[tuple]


def frame_indices(actions: int, frames: int) -> np.ndarray:
    """`frames` states spread over a trajectory of `actions` actions, first and last always in."""
    return np.rint(np.linspace(0, actions, frames)).astype(int)


def make_clip(cfg, split: str, index: int, parts: Splits | None = None) -> Clip:
    """Clip `index` of `split`: plan, initial state, script, then `cfg.frames` frames of its replay."""
    parts = parts or splits(cfg)
    rng = clip_rng(cfg.seed, split, index)
    name, values, group = clip_plan(cfg, split, index, rng, parts)
    initial = initial_state(rng, name, values)
    script = script_for(name, values, initial)
    states = replay(initial, script)
    taps = [a[1] if a[0] == "tap" else f"key:{a[1]}" if a[0] == "type" else None for a in script] + [None]
    video = np.stack([render(states[i], cfg.size, taps[i]) for i in frame_indices(len(script), cfg.frames)])
    return Clip(video, name, values, group, template(name).fill(values), initial, script)


def generate(cfg, split: str, start: int, count: int, progress=None) -> dict[str, np.ndarray]:
    """Clips `start .. start+count-1` of `split` as arrays (video, intent, group, intent_tokens, intent_slots)."""
    parts, vocab, length = splits(cfg), vocabulary(), max_length()
    index = {w: i for i, w in enumerate(vocab)}
    out = {"video": np.empty((count, cfg.frames, cfg.size, cfg.size, 3), np.uint8), "intent": np.empty(count, np.int64),
           "intent_group": np.empty(count, np.int64), "intent_tokens": np.empty((count, length), np.int64),
           "intent_slots": np.full((count, MAX_SLOTS), PAD, np.int64)}
    for k in range(count):
        clip = make_clip(cfg, split, start + k, parts)
        out["video"][k], out["intent"][k], out["intent_group"][k] = clip.video, TEMPLATE_NAMES.index(clip.template), clip.group
        out["intent_tokens"][k] = encode(clip.sentence, vocab, length)
        out["intent_slots"][k, : len(clip.values)] = [index[v] for v in clip.values]
        if progress is not None:
            progress.update(1)
    return out


ARRAYS = {"intent": np.dtype(np.int64), "intent_group": np.dtype(np.int64), "intent_tokens": np.dtype(np.int64),
          "intent_slots": np.dtype(np.int64)}


def ui_dir(cfg: UIConfig, root: Path | None = None) -> Path:
    return dataset_dir("ui_activity", cfg.fingerprint(), root)


def _write(cfg: UIConfig, directory: Path) -> None:
    from tqdm import tqdm

    with tqdm(total=cfg.num_train + cfg.num_val, desc="ui_activity clips", unit="clip", disable=None) as bar:
        write_dataset(cfg, directory, partial(generate, cfg, progress=bar),
                      {"generator_version": GENERATOR_VERSION, "templates": list(TEMPLATE_NAMES), "vocabulary": list(vocabulary())})


def ensure_ui(cfg: UIConfig, root: Path | None = None) -> Path:
    """Generate the dataset for `cfg` unless a complete copy exists (file-locked); return its directory."""
    check(cfg)
    return ensure_dataset(ui_dir(cfg, root), cfg.fingerprint(), partial(_write, cfg))


def load_ui(path: Path, split: str) -> dict[str, np.ndarray]:
    return load_split(path, split, ARRAYS, "ui_activity", MAKE_HINT)
