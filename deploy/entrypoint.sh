#!/bin/sh
# The image's entrypoint. A platform volume (Fly's, say) is mounted at /data owned by root, over
# the image's own /data: hand it to the service user, then drop root for good before tollgate
# starts. Run as another user from the start (docker run --user), it changes nothing.
# (TOLLGATE_RUN_AS and TOLLGATE_DATA_DIR exist for the test that runs this script.)
set -eu
user=${TOLLGATE_RUN_AS:-tollgate}
data=${TOLLGATE_DATA_DIR:-/data}
if [ "$(id -u)" = 0 ]; then
  chown "$user:" "$data"
  exec setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups --inh-caps=-all -- "$@"
fi
exec "$@"
