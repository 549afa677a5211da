# The todo demo: actions add {text}, toggle {id}, remove {id} on the storage 'todos'.


def _find(items, payload):
    try:
        wanted = int(payload.get("id"))
    except (TypeError, ValueError):
        raise ValueError("payload needs a numeric 'id'")
    for item in items:
        if item["id"] == wanted:
            return item
    raise ValueError("no todo with id %d" % wanted)


def on_action(action, payload, storage):
    todos = storage["todos"]
    items = todos.setdefault("items", [])
    if action == "add":
        text = str(payload.get("text", "")).strip()
        if not text:
            raise ValueError("a todo needs some text")
        next_id = todos.get("next_id", 1)
        items.append({"id": next_id, "text": text[:200], "done": False,
                      "created": datetime.now().isoformat(timespec="seconds")})
        todos["next_id"] = next_id + 1
    elif action == "toggle":
        item = _find(items, payload)
        item["done"] = not item["done"]
    elif action == "remove":
        items.remove(_find(items, payload))
    elif action == "clear_done":
        todos["items"] = [i for i in items if not i["done"]]
    else:
        raise ValueError("unknown action %r (add, toggle, remove, clear_done)" % action)
