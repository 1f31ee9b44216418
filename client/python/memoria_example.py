#!/usr/bin/env python3
"""Memoria from Python: ingest a document, generate with explicit memory, print the citations.

Needs Debian's python3-grpcio and python3-protobuf, and protoc with grpc_python_plugin
(protobuf-compiler, protobuf-compiler-grpc) to make the stubs from proto/ at start-up; nothing
generated is committed. (Debian 12's python3-grpc-tools is gRPC 1.14 with a protoc too old for
python3-protobuf 4.21, so it is not used.)

    python3 client/python/memoria_example.py --server 127.0.0.1:50051 \\
        --document-id ada --text "Ada Lovelace wrote the first program." \\
        --prompt "Who wrote the first program?"
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

PROTOS = ["memoria/v1/generation.proto", "memoria/v1/memory_admin.proto"]
DEFAULT_PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs(proto_dir, out_dir):
    """Generates the Python stubs of the Memoria API into out_dir and imports them."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        sys.exit("memoria_example: needs protoc and grpc_python_plugin "
                 "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    subprocess.run([protoc, f"--proto_path={proto_dir}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    *PROTOS], check=True)
    sys.path.insert(0, out_dir)
    names = ["generation_pb2", "generation_pb2_grpc", "memory_admin_pb2", "memory_admin_pb2_grpc"]
    return [importlib.import_module(f"memoria.v1.{name}") for name in names]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="gRPC address HOST:PORT")
    parser.add_argument("--token", default=os.environ.get("MEMORIA_ADMIN_TOKEN", ""),
                        help="admin token (default: $MEMORIA_ADMIN_TOKEN)")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    parser.add_argument("--document-id", default="example")
    parser.add_argument("--collection", default="")
    parser.add_argument("--text", default="Memoria stores documents as explicit memory: sparse "
                        "key-value pairs that attention reads while generating.")
    parser.add_argument("--prompt", default="What does Memoria store documents as?")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=60, help="seconds per call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="memoria_stubs_") as stub_dir:
        generation_pb2, generation_grpc, admin_pb2, admin_grpc = load_stubs(args.proto_dir,
                                                                            stub_dir)
        metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
        with grpc.insecure_channel(args.server) as channel:
            admin = admin_grpc.MemoryAdminStub(channel)
            generation = generation_grpc.GenerationStub(channel)

            ingested = admin.IngestDocument(
                admin_pb2.IngestDocumentRequest(id=args.document_id, collection=args.collection,
                                                title=args.document_id,
                                                text=args.text.encode()),
                metadata=metadata, timeout=args.timeout)
            print(f"ingested {ingested.document.id}: "
                  f"{len(ingested.document.reference_ids)} references, "
                  f"{ingested.document.memory_bytes} bytes", file=sys.stderr)

            request = generation_pb2.GenerateRequest(
                prompt=args.prompt.encode(),  # free text travels as UTF-8 bytes
                sampling=generation_pb2.SamplingOptions(max_tokens=args.max_tokens),
                memory=generation_pb2.MemoryOptions(
                    collections=[args.collection] if args.collection else []))
            citations = {}  # document id -> best score, in order of first citation
            finished = None
            for response in generation.Generate(request, metadata=metadata,
                                                timeout=args.timeout):
                sys.stdout.write(response.text)
                sys.stdout.flush()
                for citation in response.retrieval.references:
                    best = citations.get(citation.document_id, citation.score)
                    citations[citation.document_id] = max(best, citation.score)
                if response.HasField("finished"):
                    finished = response.finished
            print()
            print("citations:")
            for document_id, score in citations.items():
                print(f"  [{document_id}] score {score:.3f}")
            if finished is not None:
                print(f"finish: {generation_pb2.FinishReason.Name(finished.reason)}, "
                      f"{finished.usage.completion_tokens} tokens", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        sys.exit(f"memoria_example: {error.code().name}: {error.details()}")
