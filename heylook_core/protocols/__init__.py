"""Wire-protocol adapters on the generation service (:mod:`heylook_core.service`).

Each module translates one protocol's requests into the core's internal request, the service's events into the
protocol's frames, and heylook's errors into the protocol's error shape. They use only the public service, as a
plugin that adds a protocol through ``register_routes`` would.
"""
