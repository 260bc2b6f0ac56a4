"""PyPI django-elasticache (Django's cache backend for ElastiCache auto discovery,
pylibmc in binary mode) against a ferrocache fleet: argv[1] is the configuration
endpoint. Prints the discovered node list, then stores and reads 300 keys through
the Django cache and prints the hit count and how many keys each node holds."""
import json
import sys
import warnings

warnings.simplefilter("ignore")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    CACHES={
        "default": {
            "BACKEND": "django_elasticache.memcached.ElastiCache",
            "LOCATION": sys.argv[1],
        }
    }
)
django.setup()

from django.core.cache import cache  # noqa: E402
from django_elasticache.cluster_utils import get_cluster_info  # noqa: E402

host, port = sys.argv[1].split(":")
info = get_cluster_info(host, port)
for i in range(300):
    cache.set("dj%d" % i, i, 300)
hits = sum(1 for i in range(300) if cache.get("dj%d" % i) == i)
per_node = {
    name.decode().split(" ")[0]: int(st[b"curr_items"] if b"curr_items" in st else st["curr_items"])
    for name, st in cache._cache.get_stats()
}
print(json.dumps({"version": info["version"], "nodes": info["nodes"], "hits": hits, "items": per_node}))
