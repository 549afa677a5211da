# The seed's weather-refresh task, offline by default: a reading derived deterministically from
# the city and the scheduled minute. With tasks.weather_url set (and sandbox.network = true)
# it fetches that URL instead, expecting JSON like {"temp_c": 21.5, "condition": "cloudy",
# "humidity": 60, "wind_kmh": 12}.
import datetime
import hashlib
import json
import math

CONDITIONS = ["clear", "sunny", "partly cloudy", "cloudy", "light rain", "showers", "windy", "fog"]


def generated(city, minute):
    seed = hashlib.sha256(("%s|%s" % (city, minute.strftime("%Y-%m-%dT%H:%M"))).encode()).digest()
    hour = minute.hour + minute.minute / 60
    base = 18 + 8 * math.sin((hour - 9) / 24 * 2 * math.pi)
    return {
        "temp_c": round(base + (seed[0] / 255 - 0.5) * 3, 1),
        "condition": CONDITIONS[seed[1] % len(CONDITIONS)],
        "humidity": 40 + seed[2] % 50,
        "wind_kmh": seed[3] % 40,
        "source": "generator",
    }


def fetched(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        data = json.load(response)
    return {
        "temp_c": round(float(data["temp_c"]), 1),
        "condition": str(data.get("condition", "")),
        "humidity": int(data.get("humidity", 0)),
        "wind_kmh": int(data.get("wind_kmh", 0)),
        "source": url,
    }


def on_schedule(storage):
    w = storage["weather"]
    city = w.get("city") or "Taipei"
    minute = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    url = w.get("source_url") or ""
    reading = fetched(url) if url else generated(city, minute)
    reading["time"] = minute.strftime("%H:%M")
    w["current"] = reading
    w["readings"] = (w.get("readings") or [])[-11:] + [reading]
    w["updated_at"] = minute.isoformat().replace("+00:00", "Z")
    print("weather for %s: %s C, %s" % (city, reading["temp_c"], reading["condition"]))
