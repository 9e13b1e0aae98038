"""The subset of kustomize that deploy/k8s/kustomization.yaml uses, for machines without kubectl.

Supported: ``resources`` (files), ``labels`` (``pairs`` on metadata only, kustomize's default
without ``includeSelectors``/``includeTemplates``), ``configMapGenerator`` with ``envs`` (a
content-hash suffix, and references to the ConfigMap renamed in ``envFrom``, ``env`` and
volumes), and ``images`` (``newName``/``newTag``). Anything else raises, so the fallback cannot
silently render something kubectl would render differently. ``test_k8s.py`` checks that this
renders what ``kubectl kustomize`` renders wherever kubectl is installed.

The hash suffix is a sha256 of the ConfigMap's name and data, in kustomize's 10-character
alphabet, but not byte-identical to kustomize's: compare with :func:`normalize_hashes`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["render", "normalize_hashes"]

_SUPPORTED = {"apiVersion", "kind", "resources", "labels", "configMapGenerator", "images"}


def _env_file(path: Path) -> dict[str, str]:
    data = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        data[key.strip()] = value
    return data


def _hash_suffix(name: str, data: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps({"data": data, "kind": "ConfigMap", "name": name},
                                       sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))  # kustomize avoids vowels/lookalikes


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec.get("template", {}).get("spec", {})]
    if doc.get("kind") == "Pod":
        return [spec]
    return []


def _rename_configmaps(doc: dict[str, Any], names: dict[str, str]) -> None:
    for pod in _pod_specs(doc):
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef")
                if ref and ref.get("name") in names:
                    ref["name"] = names[ref["name"]]
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref and ref.get("name") in names:
                    ref["name"] = names[ref["name"]]
        for vol in pod.get("volumes", []):
            ref = vol.get("configMap")
            if ref and ref.get("name") in names:
                ref["name"] = names[ref["name"]]


def _set_images(doc: dict[str, Any], images: list[dict[str, Any]]) -> None:
    for pod in _pod_specs(doc):
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            image = c.get("image", "")
            repo = re.split(r"[:@]", image, maxsplit=1)[0]
            for rule in images:
                if rule["name"] == repo:
                    tag = rule.get("newTag")
                    c["image"] = rule.get("newName", repo) + (f":{tag}" if tag else image[len(repo):])


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize directory`` renders, as dicts."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - _SUPPORTED
    if unknown:
        raise NotImplementedError(f"kustomize_lite does not support {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        docs += [d for d in yaml.safe_load_all((directory / res).read_text()) if d]
    names: dict[str, str] = {}
    for gen in kust.get("configMapGenerator", []):
        if set(gen) - {"name", "envs"}:
            raise NotImplementedError(f"configMapGenerator keys {sorted(set(gen) - {'name', 'envs'})}")
        data: dict[str, str] = {}
        for env in gen.get("envs", []):
            data.update(_env_file(directory / env))
        full = f"{gen['name']}-{_hash_suffix(gen['name'], data)}"
        names[gen["name"]] = full
        docs.insert(0, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": full}, "data": data})
    docs = copy.deepcopy(docs)
    for doc in docs:
        _rename_configmaps(doc, names)
        _set_images(doc, kust.get("images", []))
        for rule in kust.get("labels", []):
            if set(rule) - {"pairs"}:
                raise NotImplementedError(f"labels options {sorted(set(rule) - {'pairs'})}")
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(rule["pairs"])
    return docs


def normalize_hashes(docs: list[dict[str, Any]], generated: list[str]) -> list[dict[str, Any]]:
    """``docs`` with the hash suffix of each generated ConfigMap name replaced by ``<hash>``."""
    text = json.dumps(docs, sort_keys=True)
    for name in generated:
        text = re.sub(rf'"{re.escape(name)}-[a-z0-9]{{10}}"', f'"{name}-<hash>"', text)
    return sorted(json.loads(text), key=lambda d: (d["kind"], d["metadata"]["name"]))
