"""The HTTP routes, one router a concern; :func:`service.app.create_app` includes them all.

* :mod:`~service.routes.generate`: ``/generate``, ``/grid``, ``/interpolate``
* :mod:`~service.routes.models`: ``/models``, ``/models/{name}``, its ``samples.png``
* :mod:`~service.routes.operations`: ``/healthz``, ``/readyz``, ``/metrics``, ``/admin/reload``
* :mod:`~service.routes.v2`: the Open Inference Protocol under ``/v2``
* :mod:`~service.routes.playground`: the page at ``/`` and its ``/static`` files

How a generation request travels. The middleware (:mod:`service.middleware`, outermost first)
gives it a request ID and its access line and metrics, checks the API key, and bounds the body.
Then one of two doors: the fast path (:mod:`service.fastpath`) validates a JSON body against the
endpoint's pydantic model and calls ``serve_generate`` itself (or answers the 422 of a body that
does not validate); any other request goes to FastAPI, whose route calls the same
``serve_generate``. Both call :func:`service.serving.lookup` (the
model and its batcher, or the error a client should see) and :func:`service.serving.infer` (rows
in, uint8 images out), as ``/v2/models/{m}/infer`` does. Every error, by either door or from a
middleware, leaves through :func:`service.errors.error_response`.

How a drain proceeds (SIGTERM, :mod:`service.__main__`): ``Resources.begin_drain`` marks the
service closing, so ``/readyz`` fails and ``lookup`` refuses new work with 503 ``shutting_down``,
while the listener stays open and queued work runs on. Once nothing is in flight, or the grace
period is over (then every batcher is stopped and what still waits gets its 503), uvicorn shuts
down and the lifespan stops the batchers. A reload still loading then is not waited for past the
grace period: it finds the service closing and swaps nothing in.
"""
