#!/bin/sh
# The password comes from the environment, the same POSTGRES_PASSWORD the
# postgres service is given, so it is written to the auth file at start
# rather than baked into the image.
set -eu
umask 077
printf '"%s" "%s"\n' "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" > /tmp/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
