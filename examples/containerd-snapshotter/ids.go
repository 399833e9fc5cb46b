package snapshotter

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// baseID is the store id of the empty committed layer that snapshots
// without a parent are cloned from. It cannot collide with idOf, whose ids
// are 32 hexadecimal digits.
const baseID = "empty"

// idOf maps a containerd key or name, which may be any string, to the id of
// its dataset in the store. containerd keeps keys and names in one space,
// so one mapping serves both. 128 bits of SHA-256 make a collision
// unlikely; the name kept in the labels is compared on every lookup all
// the same, so a collision would show as "already exists", never as
// another snapshot's data.
func idOf(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// keyLocks serialises the adapter's read-modify-write sequences on one id
// (Update, Commit, Remove) while other ids proceed.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	waiters int
}

func (l *keyLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*keyLock)
	}
	k := l.m[id]
	if k == nil {
		k = &keyLock{}
		l.m[id] = k
	}
	k.waiters++
	l.mu.Unlock()

	k.Lock()
	return func() {
		k.Unlock()
		l.mu.Lock()
		k.waiters--
		if k.waiters == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// lock2 locks two ids in a fixed order, so that two callers locking the
// same pair cannot deadlock.
func (l *keyLocks) lock2(a, b string) (unlock func()) {
	if a == b {
		return l.lock(a)
	}
	if b < a {
		a, b = b, a
	}
	ua := l.lock(a)
	ub := l.lock(b)
	return func() {
		ub()
		ua()
	}
}
