"""Files: bytes an organization stores, streamed in and out, and the rows that describe them.

    records     the `files` table, its listing and lookups, and the services that create and
                delete a file (its event in the same transaction)
    upload      reading a multipart upload as it arrives: limits, fields, SHA-256
    sniffing    the type a file is stored with, read from its bytes and held to the declared one
    download    what a download answers: ranges, the ETag, a safe Content-Disposition
    links       signed, expiring download URLs
    storage     where the bytes live: the local filesystem or any S3-compatible store

Deleting a row (the file itself, or by cascade its owner or organization) queues the removal of
its bytes in the same transaction (a trigger of migration 0012 writes the outbox message), and
`workers.files.delete_file_bytes` removes them, retried until storage confirms.
"""
