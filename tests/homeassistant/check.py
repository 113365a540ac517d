"""Home Assistant's own verdict on what millwright publishes (run by tests/homeassistant.rs).

Reads a capture of real MQTT traffic (JSON: {"messages": [{"topic", "payload", "retain"}, ...]}, in arrival
order), then, with Home Assistant's code (the `homeassistant` package pinned in scripts/test):
- validates each discovery config with its platform's DISCOVERY_SCHEMA;
- builds the platform's entity from it (which is where deprecations such as `object_id` are warned about);
- feeds every payload captured on each entity's state topic through the entity's own message handler and
  reads the state Home Assistant would record (a numeric sensor given a word raises ValueError there).
Every WARNING or ERROR that Home Assistant logs meanwhile counts. Prints a JSON report; exit 1 on any error
or warning.
"""

import asyncio
import importlib
import json
import logging
import sys
import tempfile

from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.components.mqtt.models import ReceiveMessage

ENTITY_CLASSES = {"sensor": "MqttSensor", "binary_sensor": "MqttBinarySensor", "button": "MqttButton"}


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def entity_for(hass, platform, config, n):
    module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
    cls = getattr(module, ENTITY_CLASSES[platform])
    validated = module.DISCOVERY_SCHEMA(config)
    # The parts of MqttEntity.__init__ that read the config: the platform's own setup, the common
    # attributes, and the default entity id (its deprecation warning). The rest needs a broker connection.
    e = cls.__new__(cls)
    e.hass = hass
    e.entity_id = f"{platform}.checked_{n}"
    e._config = validated
    e._discovery = True
    e._attr_unique_id = None
    e._setup_from_config(validated)
    e._setup_common_attributes_from_config(validated)
    e._init_entity_id()
    return e, validated


async def main(capture_path):
    with open(capture_path) as f:
        messages = json.load(f)["messages"]
    collect = Collect()
    logging.getLogger("homeassistant").addHandler(collect)
    logging.getLogger("homeassistant").setLevel(logging.DEBUG)
    logging.getLogger("homeassistant").propagate = False

    configs = {}
    for m in messages:
        parts = m["topic"].split("/")
        if len(parts) >= 4 and parts[0] == "homeassistant" and parts[-1] == "config":
            configs[m["topic"]] = m["payload"]
    errors, entities, rendered = [], {}, 0
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        for n, (topic, payload) in enumerate(sorted(configs.items())):
            if payload == "":
                continue
            platform = topic.split("/")[1]
            if platform not in ENTITY_CLASSES:
                errors.append(f"{topic}: platform {platform} is not checked here")
                continue
            try:
                config = json.loads(payload)
                before = len(collect.records)
                entity, validated = entity_for(hass, platform, config, n)
            except Exception as ex:  # the verdict itself: report, go on with the next
                errors.append(f"{topic}: {type(ex).__name__}: {ex}")
                continue
            # Beyond the schema, what the issue asks of every config.
            if "origin" not in config:
                errors.append(f"{topic}: no origin block")
            if "availability" in config and ("payload_available" in config or "payload_not_available" in config):
                errors.append(f"{topic}: payload_available/payload_not_available beside availability")
            states = []
            state_topic = config.get("state_topic")
            for m in messages:
                if state_topic is None or m["topic"] != state_topic:
                    continue
                msg = ReceiveMessage(
                    topic=m["topic"], payload=m["payload"], qos=1, retain=m["retain"],
                    subscribed_topic=m["topic"], timestamp=0.0,
                )
                try:
                    # The sensor's handler is _update_state, the binary sensor's _state_message_received.
                    handler = getattr(entity, "_update_state", None) or entity._state_message_received
                    handler(msg)
                    states.append(entity.state)
                    rendered += 1
                except Exception as ex:
                    errors.append(f"{topic}: payload {m['payload'][:120]!r}: {type(ex).__name__}: {ex}")
            entities[topic] = {
                "entity_id": entity.entity_id,
                "name": config.get("name"),
                "device": (config.get("device") or {}).get("name"),
                "states": states,
                "warnings": collect.records[before:],
            }
        await hass.async_stop(force=True)
    report = {
        "homeassistant": HA_VERSION,
        "configs": len(entities),
        "states_rendered": rendered,
        "errors": errors,
        "warnings": collect.records,
        "entities": entities,
    }
    print(json.dumps(report, indent=1, default=str))
    return 1 if errors or collect.records else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
