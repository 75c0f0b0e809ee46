"""The OpenAPI 3.1 description of the gateway API, kept beside the routes it describes.

``tests/gateway`` checks that every route in ``app.ROUTES`` is described here
and that the document validates as OpenAPI 3.1.
"""

from __future__ import annotations

from typing import Any

from .errors import STATUS_FOR_CODE

__all__ = ["openapi_document"]

_SIG_HEADERS = [
    {"name": "Signature-Input", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 4096}},
    {"name": "Signature", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 4096}},
]
_DIGEST = {"name": "Content-Digest", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 256}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {
            "description": "refused",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }


def _binary_body(media: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {media: {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
    }


def openapi_document() -> dict[str, Any]:
    auth_refusals = (400, 401, 403, 413, 429, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sanaq Sync gateway",
            "version": "1",
            "description": "Authenticated census batch ingest. Byte formats and signature rules: docs/protocol.md.",
        },
        "paths": {
            "/v1/batches": {
                "post": {
                    "operationId": "postBatch",
                    "summary": "Submit one sealed, signed batch envelope; answer with a signed receipt",
                    "parameters": [*_SIG_HEADERS, _DIGEST],
                    "requestBody": _binary_body("application/vnd.sanaq.batch", "batch envelope bytes"),
                    "responses": {
                        "200": {
                            "description": "stored (or stored before)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReceiptAnswer"}}},
                        },
                        **_problems(*auth_refusals, 408, 409, 415),
                    },
                }
            },
            "/v1/devices/{device_id}/state": {
                "get": {
                    "operationId": "getDeviceState",
                    "summary": "Signed sync state of a device: highest contiguous seq, gaps, last sync",
                    "parameters": [
                        {
                            "name": "device_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                        },
                        *_SIG_HEADERS,
                    ],
                    "responses": {
                        "200": {
                            "description": "state",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncState"}}},
                        },
                        **_problems(*auth_refusals),
                    },
                }
            },
            "/v1/devices/{device_id}/assignments": {
                "get": {
                    "operationId": "getDeviceAssignments",
                    "summary": "Signed, versioned list of the tablet's institution's list entries and their status",
                    "parameters": [
                        {
                            "name": "device_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "description": "the version the tablet holds: only entries changed after it (0: all)",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
                        },
                        *_SIG_HEADERS,
                    ],
                    "responses": {
                        "200": {
                            "description": "assignments",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Assignments"}}},
                        },
                        **_problems(*auth_refusals),
                    },
                }
            },
            "/v1/registry": {
                "get": {
                    "operationId": "getRegistry",
                    "summary": "The registry snapshot in force (root-signed)",
                    "parameters": list(_SIG_HEADERS),
                    "responses": {
                        "200": {
                            "description": "snapshot bytes",
                            "content": {"application/vnd.sanaq.snapshot": {"schema": {"type": "string"}}},
                        },
                        **_problems(*auth_refusals),
                    },
                },
                "put": {
                    "operationId": "putRegistry",
                    "summary": "Offer a newer root-signed snapshot (the signature is the authorisation)",
                    "requestBody": _binary_body("application/vnd.sanaq.snapshot", "snapshot bytes"),
                    "responses": {
                        "200": {
                            "description": "accepted",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["version"],
                                        "properties": {"version": {"type": "integer", "minimum": 1}},
                                    }
                                }
                            },
                        },
                        **_problems(400, 401, 408, 409, 410, 413, 415, 503),
                    },
                },
            },
            "/v1/custody": {
                "post": {
                    "operationId": "postCustody",
                    "summary": "A station's signed custody record of one USB pull",
                    "parameters": [*_SIG_HEADERS, _DIGEST],
                    "requestBody": _binary_body("application/vnd.sanaq.custody", "custody record bytes"),
                    "responses": {
                        "200": {
                            "description": "stored",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["stored", "batches"],
                                        "properties": {"stored": {"type": "boolean"}, "batches": {"type": "integer"}},
                                    }
                                }
                            },
                        },
                        **_problems(*auth_refusals, 408, 415),
                    },
                }
            },
            "/v1/web/access-codes/since/{version}": {
                "get": {
                    "operationId": "getAccessCodes",
                    "summary": "A web service's signed list of access-code changes after a version (protocol 9.2)",
                    "parameters": [
                        *_SIG_HEADERS,
                        {
                            "name": "version",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,15})$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "changes",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AccessCodes"}}},
                        },
                        **_problems(*auth_refusals, 404),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "responses": {
                        "200": {"description": "alive", "content": {"application/json": {"schema": {"type": "object"}}}}
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness (store open, registry valid)",
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": {
                            "description": "not ready",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "code", "detail", "server_time_ms"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "code": {"type": "string", "enum": sorted(STATUS_FOR_CODE)},
                        "detail": {"type": "string"},
                        "server_time_ms": {"type": "integer"},
                    },
                },
                "ReceiptAnswer": {
                    "type": "object",
                    "required": ["receipt", "duplicate", "batch_hash", "device_id", "seq", "received_at_ms", "road"],
                    "properties": {
                        "receipt": {"type": "string", "contentEncoding": "base64"},
                        "duplicate": {"type": "boolean"},
                        "batch_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "device_id": {"type": "string"},
                        "seq": {"type": "integer", "minimum": 1},
                        "received_at_ms": {"type": "integer"},
                        "road": {"type": "string"},
                    },
                },
                "AccessCodes": {
                    "type": "object",
                    "required": ["access_codes", "since", "latest", "count"],
                    "properties": {
                        "access_codes": {"type": "string", "contentEncoding": "base64"},
                        "since": {"type": "integer", "minimum": 0},
                        "latest": {"type": "integer", "minimum": 0},
                        "count": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                },
                "Assignments": {
                    "type": "object",
                    "required": ["assignments", "device_id", "institution", "version", "since", "entries"],
                    "properties": {
                        "assignments": {"type": "string", "contentEncoding": "base64"},
                        "device_id": {"type": "string"},
                        "institution": {"type": "string"},
                        "version": {"type": "integer", "minimum": 0},
                        "since": {"type": "integer", "minimum": 0},
                        "entries": {"type": "integer", "minimum": 0},
                    },
                },
                "SyncState": {
                    "type": "object",
                    "required": ["sync_state", "device_id", "highest_contiguous", "max_seq", "gaps", "last_sync_ms"],
                    "properties": {
                        "sync_state": {"type": "string", "contentEncoding": "base64"},
                        "device_id": {"type": "string"},
                        "highest_contiguous": {"type": "integer", "minimum": 0},
                        "max_seq": {"type": "integer", "minimum": 0},
                        "gaps": {
                            "type": "array",
                            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                        },
                        "last_sync_ms": {"type": ["integer", "null"]},
                    },
                },
            }
        },
    }
