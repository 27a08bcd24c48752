"""Chunking, embedding, FAISS indexes, the retriever and RAG prompt assembly."""
