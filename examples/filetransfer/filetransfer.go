// Package filetransfer is the file transfer example of
// draft-conrad-rserpool-service (section 3.3) on rsp's sessions: a pool of
// file servers, every one able to serve any file, and a client that
// survives the death of its server in the middle of a transfer.
//
// The client asks for a file with "GET name offset"; the server answers
// with data messages, each carrying the offset of its bytes, and an end
// message with the file's size and SHA-256. When the server dies, the
// client's session fails over to another element of the pool by itself,
// and the failover callback sends the new server a resynchronisation
// message: "GET name received", received being the bytes the client has
// so far. Data the client already has (messages from the old server still
// queued, or a request replayed after the resynchronisation) is skipped by
// its offset. At the end the client checks the bytes against the
// server's SHA-256.
//
// The servers are stateless (rsp.SessionConfig.Stateless): every request
// stands alone, so a session may move to any of them without a cookie.
package filetransfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp"
)

// The application PPIDs of the messages a server sends (rsp.Message.PPID);
// requests go with PPID 0.
const (
	// PPIDData: 8 bytes of offset (big-endian), then the file's bytes
	// from there.
	PPIDData = 1
	// PPIDEnd: the file's size (8 bytes, big-endian) and its SHA-256 (32
	// bytes); it follows the last data message.
	PPIDEnd = 2
	// PPIDError: a UTF-8 reason; the request failed.
	PPIDError = 3
)

// DefaultChunkSize is the largest number of file bytes in a data message.
const DefaultChunkSize = 16 << 10

// Errors of Client.Fetch.
var (
	// ErrServer: the server refused the request (a missing file, a bad
	// offset); the error says why.
	ErrServer = errors.New("filetransfer: server refused the request")
	// ErrChecksum: the bytes received do not have the server's SHA-256.
	ErrChecksum = errors.New("filetransfer: checksum mismatch")
	// ErrProtocol: a message the protocol does not allow.
	ErrProtocol = errors.New("filetransfer: protocol violation")
	// ErrNoSession: the pool element reached does not speak sessions.
	ErrNoSession = errors.New("filetransfer: pool element does not speak sessions")
)

// request is "GET name offset".
func request(name string, offset int64) []byte {
	return fmt.Appendf(nil, "GET %s %d", name, offset)
}

func parseRequest(b []byte) (name string, offset int64, err error) {
	rest, ok := bytes.CutPrefix(b, []byte("GET "))
	i := bytes.LastIndexByte(rest, ' ')
	if !ok || i <= 0 {
		return "", 0, fmt.Errorf("bad request %q", b)
	}
	offset, err = strconv.ParseInt(string(rest[i+1:]), 10, 64)
	if err != nil || offset < 0 {
		return "", 0, fmt.Errorf("bad offset in request %q", b)
	}
	return string(rest[:i]), offset, nil
}

// Server serves the files of FS to the sessions of a pooled listener.
type Server struct {
	// FS holds the files served, as os.DirFS of a directory.
	FS fs.FS
	// ChunkSize is the most file bytes in a data message; zero means
	// DefaultChunkSize. It must fit the sessions' MaxMessageSize with the
	// offset's 8 bytes.
	ChunkSize int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger

	mu       sync.Mutex
	l        net.Listener
	sessions map[*rsp.Session]struct{}
	closed   bool
}

// Serve accepts sessions on l, a listener of rsp.ListenConfig with
// stateless sessions, and serves each until it ends or Close is called.
// Plain connections are closed. It returns when l fails or is closed.
func (srv *Server) Serve(l net.Listener) error {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return net.ErrClosed
	}
	srv.l = l
	srv.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		s, ok := c.(*rsp.Session)
		if !ok {
			c.Close()
			continue
		}
		if !srv.track(s) {
			s.GoAway()
			continue
		}
		go func() {
			defer srv.untrack(s)
			srv.serveSession(s)
		}()
	}
}

func (srv *Server) track(s *rsp.Session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	if srv.sessions == nil {
		srv.sessions = make(map[*rsp.Session]struct{})
	}
	srv.sessions[s] = struct{}{}
	return true
}

func (srv *Server) untrack(s *rsp.Session) {
	srv.mu.Lock()
	delete(srv.sessions, s)
	srv.mu.Unlock()
}

// Close shuts the server down: it closes the listener (which leaves the
// pool) and tells every client that this server goes away (GOAWAY), so
// that their sessions fail over to another server and go on from where
// they are.
func (srv *Server) Close() error {
	srv.mu.Lock()
	srv.closed = true
	l := srv.l
	ss := make([]*rsp.Session, 0, len(srv.sessions))
	for s := range srv.sessions {
		ss = append(ss, s)
	}
	srv.mu.Unlock()
	var err error
	if l != nil {
		err = l.Close()
	}
	for _, s := range ss {
		s.GoAway()
	}
	return err
}

func (srv *Server) logger() *slog.Logger {
	if srv.Logger != nil {
		return srv.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// serveSession reads requests; each one replaces the transfer under way,
// if any, with one from the request's offset.
func (srv *Server) serveSession(s *rsp.Session) {
	defer s.Close()
	stop := func() {}
	defer func() { stop() }()
	for {
		m, err := s.ReadMsg()
		if err != nil {
			return
		}
		stop()
		stop = func() {}
		name, offset, err := parseRequest(m.Data)
		if err != nil {
			s.WriteMsg([]byte(err.Error()), rsp.WriteOptions{PPID: PPIDError})
			continue
		}
		stop = srv.start(s, name, offset)
	}
}

// start starts a transfer; the function it returns stops it and waits
// for it.
func (srv *Server) start(s *rsp.Session, name string, offset int64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.send(ctx, s, name, offset); err != nil && ctx.Err() == nil {
			srv.logger().Info("filetransfer: transfer ended", "file", name, "offset", offset, "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// send sends file name from offset, then the end message.
func (srv *Server) send(ctx context.Context, s *rsp.Session, name string, offset int64) error {
	size, sum, err := srv.checksum(name)
	if err == nil && offset > size {
		err = fmt.Errorf("offset %d beyond the size %d of %s", offset, size, name)
	}
	var f fs.File
	if err == nil {
		f, err = srv.FS.Open(name)
	}
	if err != nil {
		_, werr := s.WriteMsg([]byte(err.Error()), rsp.WriteOptions{PPID: PPIDError})
		return werr
	}
	defer f.Close()
	if _, err := io.CopyN(io.Discard, f, offset); err != nil {
		return err
	}
	chunk := srv.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	buf := make([]byte, 8+chunk)
	for offset < size {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := io.ReadFull(f, buf[8:8+min(int64(chunk), size-offset)])
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint64(buf, uint64(offset))
		if _, err := s.WriteMsg(buf[:8+n], rsp.WriteOptions{PPID: PPIDData}); err != nil {
			return err
		}
		offset += int64(n)
	}
	end := binary.BigEndian.AppendUint64(nil, uint64(size))
	_, err = s.WriteMsg(append(end, sum[:]...), rsp.WriteOptions{PPID: PPIDEnd, AckRequest: true})
	return err
}

func (srv *Server) checksum(name string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := srv.FS.Open(name)
	if err != nil {
		return 0, sum, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	h.Sum(sum[:0])
	return n, sum, err
}

// Client fetches files from a pool of Servers.
type Client struct {
	// Dialer reaches the pool; nil means a zero rsp.Dialer. Its session
	// configuration applies, with the resynchronisation added to its
	// OnFailover (called first; its error refuses the element).
	Dialer *rsp.Dialer
	// Pool is the pool's address, as "pool:files".
	Pool string
	// Progress, if set, is called after each data message written, with
	// the bytes received so far and the server that sent them.
	Progress func(received int64, from rsp.Element)
}

// Result is what a fetch received.
type Result struct {
	// Size is the file's size, all of which was written.
	Size int64
	// SHA256 is the file's checksum, the server's and the bytes'.
	SHA256 [sha256.Size]byte
	// Failovers is how many times the session moved to another server.
	Failovers int
}

// Fetch writes file name, fetched from a server of the pool, to w. When
// the server fails, the session fails over to another, which is asked for
// the rest from the bytes received. It returns once the whole file is
// written and its checksum verified, or with the error that ended the
// transfer (ctx's, ErrChecksum, ErrServer, or the session's, as
// rsp.ErrFailoverFailed when no server was left).
func (c *Client) Fetch(ctx context.Context, name string, w io.Writer) (Result, error) {
	var d rsp.Dialer
	if c.Dialer != nil {
		d = *c.Dialer
	}
	var received atomic.Int64
	user := d.Session.OnFailover
	d.Session.OnFailover = func(ctx context.Context, f *rsp.Failover) error {
		if user != nil {
			if err := user(ctx, f); err != nil {
				return err
			}
		}
		// The resynchronisation: the new server sends the rest. Data
		// still queued from the old one is skipped by its offset.
		return f.Send(request(name, received.Load()))
	}
	conn, err := d.DialContext(ctx, "tcp", c.Pool)
	if err != nil {
		return Result{}, err
	}
	s, ok := conn.(*rsp.Session)
	if !ok {
		conn.Close()
		return Result{}, ErrNoSession
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (Result, error) {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, err
	}
	if _, err := s.WriteMsg(request(name, 0), rsp.WriteOptions{AckRequest: true}); err != nil {
		return fail(err)
	}
	h := sha256.New()
	for {
		m, err := s.ReadMsg()
		if err != nil {
			return fail(err)
		}
		switch m.PPID {
		case PPIDData:
			if len(m.Data) < 8 {
				return fail(fmt.Errorf("%w: data message of %d bytes", ErrProtocol, len(m.Data)))
			}
			off := int64(binary.BigEndian.Uint64(m.Data))
			data := m.Data[8:]
			have := received.Load()
			if off > have || off < 0 {
				return fail(fmt.Errorf("%w: data from offset %d with %d bytes received", ErrProtocol, off, have))
			}
			if off+int64(len(data)) <= have {
				continue // had it already
			}
			data = data[have-off:]
			if _, err := w.Write(data); err != nil {
				return fail(err)
			}
			h.Write(data)
			received.Add(int64(len(data)))
			if c.Progress != nil {
				c.Progress(received.Load(), m.From)
			}
		case PPIDEnd:
			if len(m.Data) < 8+sha256.Size {
				return fail(fmt.Errorf("%w: end message of %d bytes", ErrProtocol, len(m.Data)))
			}
			r := Result{Size: int64(binary.BigEndian.Uint64(m.Data)), Failovers: s.Failovers()}
			copy(r.SHA256[:], m.Data[8:])
			if have := received.Load(); have != r.Size {
				return fail(fmt.Errorf("%w: end of a %d-byte file with %d bytes received", ErrProtocol, r.Size, have))
			}
			if !bytes.Equal(h.Sum(nil), r.SHA256[:]) {
				return fail(ErrChecksum)
			}
			return r, nil
		case PPIDError:
			return fail(fmt.Errorf("%w: %s", ErrServer, m.Data))
		default:
			return fail(fmt.Errorf("%w: message with PPID %d", ErrProtocol, m.PPID))
		}
	}
}
