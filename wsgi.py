from inbox import create_app
from inbox.concurrency import freeze_startup_heap

app = create_app()
freeze_startup_heap()  # a full GC would otherwise walk the whole app on the request path (inbox/concurrency.py)
