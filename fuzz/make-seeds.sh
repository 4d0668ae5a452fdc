#!/bin/sh
# Regenerate fuzz/seeds/ (committed; run from the repository root).
# fuzz_decode: byte 0 selects the status (0 -> 200, 4 -> 404, 5 -> 502, see
# fuzz_decode.c), the rest is the body. fuzz_decode_diff: byte 0 selects the
# status (0 -> 200, 5 -> 404) and bit 3 strict (see fuzz_decode_diff.c).
# fuzz_connstr: byte 0 selects the mode.
set -eu
cd "$(dirname "$0")/.."
d=fuzz/seeds/fuzz_decode c=fuzz/seeds/fuzz_connstr x=fuzz/seeds/fuzz_decode_diff
rm -rf "$d" "$c" "$x"
mkdir -p "$d" "$c" "$x"
seed() { # dir name mode-byte(octal) content
  { printf "\\$3"; printf '%s' "$4"; } >"$1/$2"
}
for f in emulator/fixtures/*.json; do
  case $f in *.meta.json) continue ;; esac
  [ "$(wc -c <"$f")" -le 4096 ] || continue # the 200-target one is too big
  n=$(basename "$f" .json | tr ' +' '__')
  seed "$d" "200-$n" 000 "$(cat "$f")"
  seed "$x" "200-$n" 000 "$(cat "$f")"
  seed "$x" "strict-$n" 010 "$(cat "$f")"
done
# the shapes the one-walk decoder treats apart from the old one's walk
seed "$x" lone-surrogate 000 '{"callConnectionId":"a\ud83d","targets":[{"rawId":"x\udc00"}]}'
seed "$x" lone-surrogate-and-bad-json 000 '{"callConnectionId":"a\ud83d",}'
seed "$x" surrogate-pair 000 '{"callConnectionId":"\ud83d\ude00","x":"\\ud800"}'
seed "$x" null-in-string-only 000 '{"callConnectionId":"null","source":{"phoneNumber":{"value":"nullable"}}}'
seed "$x" null-elements 000 '{"targets":[null,{"phoneNumber":{"value":"1"}},[null],[1,null],{"a":[null]}]}'
seed "$x" null-elements-strict 010 '{"targets":[null,{"phoneNumber":{"value":"1"}}]}'
seed "$x" targets-object 000 '{"targets":{"a":null},"source":[]}'
seed "$x" ident-odd-values 000 '{"source":{"kind":1,"rawId":"","phoneNumber":[null],"x":{"y":null}},"targets":[{"kind":"phoneNumber","rawId":""},{"rawId":7,"microsoftTeamsApp":{"appId":"a","cloud":"dod"}}]}'
seed "$x" ident-many-fields 000 '{"source":{"a":1,"b":2,"c":3,"d":4,"teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r","cloud":"gcch"}}}'
seed "$x" strict-wrong-types 010 '{"targets":[{"phoneNumber":{"value":1}},{"kind":2}],"callbackUri":3,"source":{"microsoftTeamsUser":{"isAnonymous":"x"}}}'
seed "$x" error-2xx 000 '{"error":{"code":"8522","message":"Call not found."}}'
seed "$x" error-2xx-null-id 000 '{"error":{"code":"1"},"callConnectionId":null}'
seed "$x" 404-error 005 '{"error":{"code":"8522","message":"Call not found.","target":null,"details":[{"code":"x","message":"y"}],"innererror":{"code":"z"}}}'
seed "$x" 200-deep 000 '{"a":[[[[[[[[[[[[[[[[[[[[{"b":null}]]]]]]]]]]]]]]]]]]]}'
seed "$x" 200-small-decoder 100 '{"targets":[{"phoneNumber":{"value":"1","x":{"y":[1]}}}]}'
seed "$d" 404-error 004 '{"error":{"code":"8522","message":"Call not found.","target":null,"details":[{"code":"x","message":"y"}],"innererror":{"code":"z"}}}'
seed "$d" 404-numeric-code 004 '{"error":{"code":8522,"message":"Call\nnot found."}}'
seed "$d" 502-html 005 '<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>'
seed "$d" 429-text 006 'Too many requests
retry later'
seed "$d" 200-array 000 '[1,2,{"a":null}]'
seed "$d" 200-deep 000 '{"a":[[[[[[[[[[[[[[[[[[[[{"b":null}]]]]]]]]]]]]]]]]]]]}'
seed "$d" rawid-acs 000 '8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9'
seed "$d" rawid-ext 000 '8:gcch-acs:res_tenant_user'
seed "$d" rawid-phone 000 '4:+14250123456_asserted'
seed "$d" rawid-teams 000 '8:orgid:45ab2481-1c1c-4005-be24-0ffb879b1130'
seed "$d" rawid-app 000 '28:dod:01234567-89ab-cdef-0123-456789abcdef'
seed "$d" ident-table 000 '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u","isAnonymous":false,"cloud":"gcch"}}'
seed "$c" connstr 000 'endpoint=https://contoso.communication.azure.com/;accesskey=ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHk='
seed "$c" connstr-messy 000 ' AccessKey = QUJD ; ;ENDPOINT= http://127.0.0.1:8080/base/ ;other=x=y;'
seed "$c" connstr-dup 000 'endpoint=a;endpoint=b;accesskey=QUJD'
printf '\001key\000GET\000/calling/callConnections/x?api-version=2026-03-12\000Wed, 13 Apr 2022 18:09:12 GMT\000contoso.communication.azure.com\00047DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' >"$c/sign" # NULs: not through $(...)
seed "$c" segment 002 '18dea47f-b081-4107-9a5c-4300819d2c6c'
seed "$c" segment-escape 002 '../a/b?c#d e%2F..'
seed "$c" segment-dots 002 '..'
seed "$c" url 003 'https://Contoso.Communication.Azure.com:443/calling/callConnections/a%20b?api-version=1&x=y'
seed "$c" url-loopback 003 'http://[::1]:8080/p/'
seed "$c" url-creds 003 'https://user:pw@host/'
seed "$c" key 004 'ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHk='
seed "$c" date 005 '12345678'
printf '\005\000\000\000\000\000\000\000\100' >"$c/date-huge" # 2^62 s: gmtime_r fails
printf '\007\001\043\105\147\211\253\315\357\376\334\272\230\166\124\062\020' >"$c/uuid"
seed "$c" crlf 006 'a
b'
