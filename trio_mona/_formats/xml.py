"""fromXML's Python half, and the parser fromXMLRPC shares: expat with every entity
declaration and external reference refused (no entity expansion, no file or network
read), nesting bounded, then the tree as a tape (``tape.py``; docs/lua/conversions.rst).
"""

from __future__ import annotations

from xml.parsers import expat

from .tape import MARK, MAX_DEPTH, REF, Tapes, TooDeep

#: An element: its name, its attributes in document order, its children (elements and
#: text, in order).
Element = tuple[str, list[tuple[str, str]], list["Element | str"]]


class Refused(Exception):
    """The document uses a feature refused for safety (an entity declaration)."""


def parse(document: bytes) -> tuple[dict[str, str], list[Element | str]]:
    """The XML declaration's attributes and the document's top nodes. Raises
    ``expat.ExpatError``, :class:`Refused` or :class:`TooDeep`."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    declaration: dict[str, str] = {}
    top: list[Element | str] = []
    stack: list[list[Element | str]] = [top]

    def start(name: str, attributes: list[str]) -> None:
        if len(stack) > MAX_DEPTH:
            raise TooDeep
        children: list[Element | str] = []
        pairs = list(zip(attributes[::2], attributes[1::2], strict=True))
        stack[-1].append((name, pairs, children))
        stack.append(children)

    def end(name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        siblings = stack[-1]
        last = siblings[-1] if siblings else None
        if isinstance(last, str):  # (expat may split a text)
            siblings[-1] = last + data
        else:
            siblings.append(data)

    def xml_declaration(version: str | None, encoding: str | None, standalone: int) -> None:
        for key, value in (("version", version), ("encoding", encoding)):
            if value is not None:
                declaration[key] = value
        if standalone != -1:
            declaration["standalone"] = "yes" if standalone else "no"

    def refuse(*_: object) -> None:
        raise Refused

    def doctype(name: str, system_id: str | None, public_id: str | None, internal: int) -> None:
        if system_id is not None or public_id is not None:
            raise Refused  # (an external DTD is never read)

    parser.ordered_attributes = True
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.XmlDeclHandler = xml_declaration
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.SkippedEntityHandler = refuse
    parser.StartDoctypeDeclHandler = doctype
    parser.Parse(document, True)
    return declaration, top


def expat_message(exc: expat.ExpatError) -> bytes:
    """What a parse error says, and where."""
    return f"{expat.ErrorString(exc.code)} (line {exc.lineno}, column {exc.offset + 1})".encode()


def _without_blanks(nodes: list[Element | str]) -> list[Element | str]:
    return [n for n in nodes if n.__class__ is not str or not n.isspace()]


def _element(element: Element, out: list[object], made: list[int]) -> None:
    """One element as a map: __name, the attributes, the children by index, the first
    child of each name by name (unless an attribute has it), and __value."""
    name, attributes, children = element
    children = _without_blanks(children)
    made[0] += 1
    pairs = 1 + len(attributes) + len(children)
    ids: list[int | None] = []
    first_of: dict[str, int] = {}
    taken = {key for key, _ in attributes} | {"__name", "__value"}
    out += (MARK, 0)  # (the count is set below, once known)
    code_at = len(out) - 1
    out += (b"__name", name.encode())
    for key, value in attributes:
        out += (key.encode(), value.encode())
    for index, child in enumerate(children, start=1):
        out.append(index)
        if isinstance(child, str):
            out.append(child.encode())
            ids.append(None)
        else:
            child_id = made[0] + 1
            ids.append(child_id)
            _element(child, out, made)
            child_name = child[0]
            if child_name not in taken and child_name not in first_of:
                first_of[child_name] = child_id
    for child_name, made_id in first_of.items():
        out += (child_name.encode(), MARK, REF, made_id)
    if children:
        out.append(b"__value")
        first = children[0]
        out += (first.encode(),) if first.__class__ is str else (MARK, REF, ids[0])
    pairs += len(first_of) + (1 if children else 0)
    out[code_at] = 2 * pairs + 1


def read(tapes: Tapes, document: bytes) -> tuple[object, ...]:
    """The document as one table (``xml``: the declaration; its elements by index and
    by name; ``__value``: the first), as a tape, or ``(None, message)``."""
    try:
        declaration, top = parse(document)
    except expat.ExpatError as exc:
        return (
            None,
            f"{expat.ErrorString(exc.code)} (line {exc.lineno}, column {exc.offset + 1})".encode(),
        )
    except Refused:
        return None, b"entity declarations and external entities are refused"
    except TooDeep:
        return None, f"elements nested deeper than {MAX_DEPTH}".encode()
    return tapes.first(1, _document(declaration, _without_blanks(top)))


def _document(declaration: dict[str, str], top: list[Element | str]) -> list[object]:
    out: list[object] = [MARK, 0]
    made = [1]  # (the document's own table is the first)
    pairs = 0
    if declaration:
        made[0] += 1
        out += (b"xml", MARK, 2 * len(declaration) + 1)
        for key, value in declaration.items():
            out += (key.encode(), value.encode())
        pairs += 1
    first_of: dict[str, int] = {}
    first_id: int | None = None
    for index, node in enumerate(top, start=1):
        out.append(index)
        pairs += 1
        if isinstance(node, str):
            out.append(node.encode())
            continue
        node_id = made[0] + 1
        _element(node, out, made)
        first_id = first_id or node_id
        first_of.setdefault(node[0], node_id)
    for name, node_id in first_of.items():
        if name not in ("xml", "__value"):
            out += (name.encode(), MARK, REF, node_id)
            pairs += 1
    if first_id is not None:
        out += (b"__value", MARK, REF, first_id)
        pairs += 1
    out[1] = 2 * pairs + 1
    return out
