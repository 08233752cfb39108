"""On-disk formats: one module per structure, each declared once with construct."""

from shareddisk.format import (heartbeat, lease, logrecord, mailbox, paxos, resource, superblock,
                               volume)
from shareddisk.format.record import Kind, RecordCodec

CODECS: dict[Kind, RecordCodec] = {
    Kind.SUPERBLOCK: superblock.CODEC,
    Kind.HEARTBEAT: heartbeat.CODEC,
    Kind.MAILBOX: mailbox.CODEC,
    Kind.LEASE: lease.CODEC,
    Kind.RESOURCE: resource.CODEC,
    Kind.LOG: logrecord.CODEC,
    Kind.VOLUME_TABLE: volume.TABLE_CODEC,
    Kind.VOLUME: volume.CODEC,
    Kind.PAXOS_LEADER: paxos.LEADER_CODEC,
    Kind.PAXOS_DBLOCK: paxos.DBLOCK_CODEC,
}
