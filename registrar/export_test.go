package registrar

import (
	"time"

	"github.com/rsp-go/rsp/asap"
)

// InjectOwned puts n pool elements into the handlespace as this
// registrar's own, without connections, as if they had registered here:
// for tests of large handlespaces.
func (r *Registrar) InjectOwned(h asap.PoolHandle, first asap.PEID, n int, pe asap.PoolElement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pe.Home = r.id
	for i := range n {
		pe.ID = first + asap.PEID(i)
		if _, err := r.hs.Register(h, pe, time.Now()); err != nil {
			panic(err)
		}
	}
}
