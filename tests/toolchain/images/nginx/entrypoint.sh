#!/bin/sh
# nginx from Debian's package, started like the official image: each
# /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME with only the defined
# environment variables substituted (nginx's own $variables stay), then nginx runs in front.
set -eu
defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    envsubst "$defined" <"$template" >"/etc/nginx/conf.d/$(basename "$template" .template)"
done
exec nginx -g 'daemon off;'
