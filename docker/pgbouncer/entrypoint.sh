#!/bin/sh
# The password comes from the environment, the same POSTGRES_PASSWORD the
# postgres service is given, so it is written to the auth file at start
# rather than baked into the image. The auth file doubles a '"' inside a
# quoted field.
set -eu
umask 077
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
printf '%s %s\n' "$(quote "${POSTGRES_USER:?}")" "$(quote "${POSTGRES_PASSWORD:?}")" > /tmp/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
