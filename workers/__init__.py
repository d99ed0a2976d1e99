"""Background jobs on dramatiq.

broker      picks Redis (REDIS_URL) or the in-process stub broker; imported first, because
            actors bind to the broker that is current when they are declared
runner      runs a dramatiq Worker in this process (`tessera worker`, or inside the server
            when there is no Redis)
outbox      relays committed domain events to the queue
heartbeat   proves that workers consume what servers enqueue
webhooks    fans events out to endpoints and delivers them, signed, with retries
files       removes the bytes of deleted files
"""

from workers import broker, email, exports, files, heartbeat, webhooks  # noqa: F401  (broker first)
