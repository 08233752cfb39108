"""shareddisk: a shared-disk quorum and failover toolkit.

Hosts that share one storage area use it as their cluster channel: heartbeat
slots, mailboxes, leases, resource configuration records and operation logs,
each a checksummed, sector-padded record (see docs/FORMAT.md).
"""

__version__ = "0.1.0"
