"""Documented limits. Every one is enforced where input enters the engine (README: Limits)."""

from __future__ import annotations

from sandbox import limits as sandbox_limits

KIB = 1024
MIB = 1024 * KIB

MAX_CODE_BYTES = 256 * KIB
MAX_DESCRIPTION_CHARS = 4000
MAX_EVENT_DATA_BYTES = 256 * KIB  # serialized JSON of one event's data
MAX_EVENTS_PER_SEND = 100
MAX_EVENT_NAME_CHARS = 256
MAX_STEP_OUTPUT_BYTES = 1 * MIB
MAX_STEP_INPUT_BYTES = 64 * KIB  # a step's arguments as kept in the trace; larger ones are noted
MAX_RUN_OUTPUT_BYTES = 1 * MIB
MAX_STEPS_PER_RUN = 10_000
MAX_STEP_ID_CHARS = 200
MAX_LOG_MESSAGE_CHARS = sandbox_limits.MAX_LOG_CHARS
MAX_LOGS_PER_RUN = sandbox_limits.MAX_LOGS_PER_ACTIVATION  # per activation, despite the name
MAX_TRIGGERS = 20
MAX_RETRIES = 20
DEFAULT_RETRIES = 4
MAX_SLEEP_SECONDS = 366 * 24 * 3600
MAX_HTTP_RESPONSE_BYTES = 1 * MIB
MAX_LIST_LIMIT = 500
LEASE_SECONDS = 30.0  # a claimed run stays with its holder this long unless renewed
