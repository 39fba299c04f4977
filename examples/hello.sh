#!/usr/bin/env bash
# A first Cronium event: greets whoever GREETING names and shows what the runner provides.
echo "hello, ${GREETING:-world}"
echo "event ${CRONIUM_EVENT_ID} v${CRONIUM_EVENT_VERSION}, running in ${CRONIUM_WORK_DIR}"
