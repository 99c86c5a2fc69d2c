"""Decision functions, one module per step of the flow.

Each takes the input, the current table entry of its key, and a ``Context`` (configuration, topic
names, the time), and returns a ``Decision``. No I/O, no clock, no random ids: the stream agents
in ``streams/`` do the moving; these functions decide.

- ``registration``: registered devices (global)
- ``query``: PROVISION_QUERY, matching, binding, homing, completion (global)
- ``rehome``: registering a vehicle in its region (regional)
- ``provision``: DEVICE_PROVISION (regional)
"""
