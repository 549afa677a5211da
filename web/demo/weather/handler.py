def on_action(action, payload, storage):
    w = storage["weather"]
    if action == "set_city":
        city = str(payload.get("city", "")).strip()
        if not city:
            raise ValueError("city must not be empty")
        w["city"] = city[:80]
        w["current"] = None
        w["readings"] = []
    else:
        raise ValueError("unknown action: %s" % action)
