"""Repairs of Faust and aiokafka behaviour, each tied to a defect in docs/faust-defects.md.

The commit guard, the transport and its librdkafka producer, the offset probe, the watchdog,
standby flushing, and the local state's reconciliation and bulk restore. The shell and the
agents use them; they know nothing of the flows.
"""
