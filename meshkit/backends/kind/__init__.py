"""Real Istio: the ``kind`` backend (meshkit's own kind cluster) and the ``kube`` backend (one namespace
of an existing cluster). Needs the ``kind`` extra (the kubernetes client): ``pip install 'meshkit[kind]'``.

Modules, one concern each: ``versions`` (pins), ``prereqs`` (tools on PATH), ``manifests`` (every
document applied), ``plan`` (the install steps, ``--dry-run``), ``cluster`` (running them, waits),
``images`` (the sample image), ``client`` (kubernetes client wrapper), ``apierrors`` (error
translation), ``podexec`` (requests from inside pods), ``accesslog`` and ``telemetry`` (reading what the
mesh did), ``poll`` (waiting for eventual config), ``backend`` (the two Backend classes).
"""
