"""The tokenizer (data/tokenizer.py): built offline with tiktoken from what the repo generates."""
from data.tokenizer import decode, encode, fingerprint, get_tokenizer, special_id

PAD, EOT = special_id("<|pad|>"), special_id("<|endoftext|>")


def test_padding_is_not_end_of_text_and_special_tokens_are_single_tokens():
    enc = get_tokenizer()
    assert PAD != EOT
    for token in ("<|endoftext|>", "<|step|>", "<|back|>", "<|pad|>"):
        assert len(enc.encode(token, allowed_special="all")) == 1


def test_every_digit_is_its_own_token_and_text_round_trips():
    enc = get_tokenizer()
    text = "q = 12 * 7; r = q - 100; ? r\nq = 12 * 7 = 12 * 7 = 15<|step|>answer: 15<|endoftext|>"
    ids = enc.encode(text, allowed_special="all")
    assert enc.decode(ids) == text
    for i in ids:
        piece = enc.decode([i])
        assert not any(c.isdigit() for c in piece) or (len(piece) == 1 and piece.isdigit())
    assert enc.n_vocab < 300  # bytes, a few merges, four special tokens


def test_the_fingerprint_changes_with_the_vocabulary_and_only_with_it():
    import tiktoken
    enc = get_tokenizer()
    same = tiktoken.Encoding(name=enc.name, pat_str=enc._pat_str, mergeable_ranks=dict(enc._mergeable_ranks),
                             special_tokens=dict(enc._special_tokens))
    extra = tiktoken.Encoding(name=enc.name, pat_str=enc._pat_str, mergeable_ranks=dict(enc._mergeable_ranks),
                              special_tokens={**enc._special_tokens, "<|extra|>": enc.n_vocab})
    assert fingerprint(same) == fingerprint(enc)  # a rebuilt tokenizer: checkpoints still load
    assert fingerprint(extra) != fingerprint(enc)  # one more token: checkpoints are refused
    text = "a = 5; b = a + 1; ? b<|step|>"
    assert decode(encode(text)) == text
