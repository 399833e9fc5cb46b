package ocilayout

import "github.com/opencontainers/go-digest"

// ChainIDs returns the chain id of each prefix of a stack of layers given
// by their diff ids, lowest first: the first layer's chain id is its diff
// id, and each further one is the sha256 digest of the text
// "PARENT_CHAIN_ID DIFF_ID", so a chain id names a layer together with
// everything below it.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// ChainID returns the chain id of the top of a stack of layers; empty for
// no layers.
func ChainID(diffIDs []digest.Digest) digest.Digest {
	if len(diffIDs) == 0 {
		return ""
	}
	ids := ChainIDs(diffIDs)
	return ids[len(ids)-1]
}
