package taskstream

import (
	"sort"
	"sync"
	"time"
)

// Folding a TaskStarted into the ReportResult that follows it, as the Python executor does
// (streams/executor/start_folding.py): a fast handler's start and result go out as one
// record, the result with Started set (ReportResult v4: started, items[].started), and the
// processor records the same task.started before the outcome.
//
// A start is parked for up to startHoldFor instead of being produced. The result of the same
// attempt (client, task, fencing token) sent within that time takes it out of the park and
// carries it; otherwise it is produced in its place: when its time is up, just before a
// ReportProgress of its attempt (a progress stays behind its start), or before any command
// other than reports and heartbeats (a registration, a release: nothing folds across it) or
// a batch-level result that names no items. A parked start is produced with the park's lock
// held, so whatever of its attempt is sent after it took its entry out follows it on the
// partition (the producer keeps the order of its Produce calls).

// startHoldFor is how long a TaskStarted may wait for its result (the Python executor's
// _START_HOLD_S).
const startHoldFor = 20 * time.Millisecond

// attempt identifies one attempt of a task: what a start and its result share.
type attempt struct {
	client string
	task   string
	token  int64
}

type parkedStart struct {
	cmd   *TaskStarted
	home  int32
	seq   uint64
	timer *time.Timer
}

// startHold is the park of starts waiting for their results.
type startHold struct {
	wait    time.Duration
	produce func(cmd *TaskStarted, home int32) // called with mu held

	mu     sync.Mutex
	held   map[attempt]*parkedStart
	seq    uint64
	closed bool // parks no more: starts go out at once
}

func newStartHold(wait time.Duration, produce func(cmd *TaskStarted, home int32)) *startHold {
	return &startHold{wait: wait, produce: produce, held: map[attempt]*parkedStart{}}
}

// park keeps a start back for its result (or produces it at once when nothing is held).
func (h *startHold) park(cmd *TaskStarted, home int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wait <= 0 || h.closed {
		h.produce(cmd, home)
		return
	}
	k := attempt{cmd.ClientID, cmd.TaskID, cmd.FencingToken}
	if old := h.held[k]; old != nil {
		// The same attempt started again (work read twice): the first start goes out.
		h.takeLocked(k, old)
		h.produce(old.cmd, old.home)
	}
	h.seq++
	p := &parkedStart{cmd: cmd, home: home, seq: h.seq}
	h.held[k] = p
	p.timer = time.AfterFunc(h.wait, func() { h.expire(k, p) })
}

// expire produces a start still parked when its time is up.
func (h *startHold) expire(k attempt, p *parkedStart) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held[k] == p {
		delete(h.held, k)
		h.produce(p.cmd, p.home)
	}
}

func (h *startHold) takeLocked(k attempt, p *parkedStart) {
	delete(h.held, k)
	p.timer.Stop() // when it fired already, expire finds its entry gone
}

// release produces the attempt's parked start, if any: something else about the attempt (a
// progress) is about to be sent and must follow it.
func (h *startHold) release(k attempt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.held[k]; p != nil {
		h.takeLocked(k, p)
		h.produce(p.cmd, p.home)
	}
}

// releaseAll produces every parked start, in the order they were parked.
func (h *startHold) releaseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseAllLocked()
}

func (h *startHold) releaseAllLocked() {
	if len(h.held) == 0 {
		return
	}
	parked := make([]*parkedStart, 0, len(h.held))
	for k, p := range h.held {
		h.takeLocked(k, p)
		parked = append(parked, p)
	}
	sort.Slice(parked, func(i, j int) bool { return parked[i].seq < parked[j].seq })
	for _, p := range parked {
		h.produce(p.cmd, p.home)
	}
}

// close produces every parked start and parks no more (the executor is draining).
func (h *startHold) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.releaseAllLocked()
}

// fold takes the parked starts of r's attempts out of the park and sets Started on r (or on
// its items) for them. It returns the starts it folded: should r not go out after all (it
// cannot be encoded), unfold produces them alone.
func (h *startHold) fold(r *ReportResult) []*parkedStart {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.BatchID == nil {
		if r.TaskID == nil || r.Started {
			return nil
		}
		k := attempt{r.ClientID, *r.TaskID, r.FencingToken}
		p := h.held[k]
		if p == nil {
			return nil
		}
		h.takeLocked(k, p)
		r.Started = true
		return []*parkedStart{p}
	}
	if len(r.Items) == 0 {
		// A batch-level report does not name its items: their starts go out in front of it.
		h.releaseAllLocked()
		return nil
	}
	var folded []*parkedStart
	for i := range r.Items {
		if r.Items[i].Started {
			continue
		}
		k := attempt{r.ClientID, r.Items[i].TaskID, r.FencingToken}
		if p := h.held[k]; p != nil {
			h.takeLocked(k, p)
			r.Items[i].Started = true
			folded = append(folded, p)
		}
	}
	return folded
}

// unfold produces starts that fold took for a result that is not sent.
func (h *startHold) unfold(folded []*parkedStart) {
	if len(folded) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range folded {
		h.produce(p.cmd, p.home)
	}
}

// pending is how many starts are parked.
func (h *startHold) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}
