"""What the tests and `make bench` share: one package, imported by both, importing neither.

- `tools`: the repository's root, the app's version, the tool versions of scripts/versions.env
  and where each built tool (Helm, Litestream, the checkers) is found.
- `servers`: real `manage.py serve` processes on 127.0.0.1, on free ports.
- `clients`: HTTP requests to them, and the waits for a visits file to catch up.
- `hostile`: slow, idle and slow-POST clients with kubelet-like probes (standard library only:
  it also runs inside a pod, piped to `kubectl exec -i POD -- python -`).
- `login_flood`: a password-guessing flood with probes alongside.
- `litestream`: a real `litestream replicate` beside a server, and what its replica restores.
- `cluster`: kubectl and helm against the project's cluster, each command kept in a
  transcript, and the waits and readings the e2e tests share.
"""
