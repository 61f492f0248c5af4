-- wrk script for bench/webhook: every request carries a different
-- pre-generated, pre-signed LINE webhook body.
--
--   wrk -t T -c C -d D -s rotate.lua http://127.0.0.1:PORT/webhook/bench -- PREFIX T
--
-- genbodies.js dealt the bodies round-robin into PREFIX.0 … PREFIX.(T-1);
-- thread k loads PREFIX.k only, so the threads take disjoint strides of the
-- body sequence. Each line is "<signature>\t<body>".
--
-- Loading: each thread maps its file (mmap, pre-faulted) and request()
-- reads the next line from the mapping, building the request in a C buffer
-- and making one Lua string of it. (Building all requests as Lua strings up
-- front costs seconds per thread: LuaJIT 2.1 hashes long strings from a few
-- sampled bytes, and requests that differ only in the middle collide in its
-- string table; reading the file into one Lua string costs seconds of page
-- faults.)
--
-- Start barrier: wrk loads thread k+1's script only after thread k has
-- started, so without it thread 0 would run, and be measured, while the
-- next file is still loading. Each thread writes PREFIX.ready.<id> once
-- loaded, and its first request waits for all T of them.
--
-- A thread never reuses a body unless it runs out: then it starts over from
-- its first body and counts the wrap. wrk cannot stop a thread from
-- request(), so the caller generates enough bodies and checks "wrapped=0"
-- (a wrap also shows as duplicates in the daemon's metrics).
--
-- done() prints one machine-readable line:
--   BENCH requests=N non2xx=N errors=N sent=N wrapped=N
--         rps=X p50_us=X p99_us=X avg_us=X max_us=X duration_us=N

local ffi = require("ffi")
ffi.cdef [[
int usleep(unsigned int usec);
int open(const char *path, int flags);
int close(int fd);
long lseek(int fd, long offset, int whence);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long offset);
void *memchr(const void *s, int c, size_t n);
]]
local C = ffi.C
local O_RDONLY, SEEK_END = 0, 2
local PROT_READ, MAP_PRIVATE, MAP_POPULATE = 1, 2, 0x8000
local MAP_FAILED = ffi.cast("void *", -1)

local threads = {}
local nthreads = 0

function setup(thread)
   thread:set("id", nthreads)
   nthreads = nthreads + 1
   threads[nthreads] = thread
end

local base, size, pos -- this thread's mapped file and where the next line starts
local head, headlen   -- request line and fixed headers, up to the signature
local buf, buflen     -- the request being built

function init(args)
   prefix = args[1]
   total_threads = tonumber(args[2] or "")
   if not prefix or not total_threads then
      error("rotate.lua: usage: wrk ... -s rotate.lua URL -- BODIES_PREFIX THREADS")
   end
   local file = prefix .. "." .. id
   local fd = C.open(file, O_RDONLY)
   if fd < 0 then error("rotate.lua: cannot open " .. file) end
   size = tonumber(C.lseek(fd, 0, SEEK_END))
   if size <= 0 then error("rotate.lua: no bodies in " .. file) end
   local p = C.mmap(nil, size, PROT_READ, MAP_PRIVATE + MAP_POPULATE, fd, 0)
   C.close(fd)
   if p == MAP_FAILED then error("rotate.lua: cannot map " .. file) end
   base = ffi.cast("const char *", p)
   pos = 0
   if C.memchr(base, 9, size) == nil then error("rotate.lua: no bodies in " .. file) end

   head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/json; charset=utf-8" ..
      "\r\nUser-Agent: LineBotWebhook/2.0\r\nX-Line-Signature: "
   headlen = #head
   buflen = 1048576
   buf = ffi.new("char[?]", buflen)
   ffi.copy(buf, head, headlen)

   sent = 0
   wrapped = 0
   started = false
   verified = false
   assert(io.open(prefix .. ".ready." .. id, "w")):close()
end

-- The request for the line at pos, or nil at the end of the file; advances pos.
local function next_request()
   if pos >= size then return nil end
   local line = base + pos
   local tab = ffi.cast("const char *", C.memchr(line, 9, size - pos))
   if tab == nil then return nil end
   local rest = size - (tab - base)
   local nl = ffi.cast("const char *", C.memchr(tab, 10, rest))
   if nl == nil then nl = base + size end
   local siglen = tab - line
   local bodylen = nl - tab - 1
   local cl = "\r\nContent-Length: " .. tonumber(bodylen) .. "\r\n\r\n"
   local total = headlen + siglen + #cl + bodylen
   if total > buflen then
      buflen = total * 2
      buf = ffi.new("char[?]", buflen)
      ffi.copy(buf, head, headlen)
   end
   ffi.copy(buf + headlen, line, siglen)
   ffi.copy(buf + headlen + siglen, cl, #cl)
   ffi.copy(buf + headlen + siglen + #cl, tab + 1, bodylen)
   pos = tonumber(nl - base) + 1
   return ffi.string(buf, total)
end

local function wait_for_all()
   for _ = 1, 600000 do -- 10 minutes at most
      local all = true
      for k = 0, total_threads - 1 do
         local f = io.open(prefix .. ".ready." .. k, "r")
         if not f then
            all = false
            break
         end
         f:close()
      end
      if all then return end
      C.usleep(1000)
   end
   error("rotate.lua: the other wrk threads never finished loading")
end

function request()
   if not started then
      if id == 0 and not verified then
         -- wrk's own check of the script, in its main thread before the
         -- threads run: answer with the first body, which is not sent and
         -- not consumed.
         verified = true
         local r = next_request()
         pos = 0
         return r
      end
      wait_for_all()
      started = true
   end
   local r = next_request()
   if not r then
      pos = 0
      wrapped = wrapped + 1
      r = next_request()
   end
   sent = sent + 1
   return r
end

function done(summary, latency, requests)
   local sent, wrapped = 0, 0
   for _, t in ipairs(threads) do
      sent = sent + (t:get("sent") or 0)
      wrapped = wrapped + (t:get("wrapped") or 0)
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH requests=%d non2xx=%d errors=%d sent=%d wrapped=%d " ..
      "rps=%.1f p50_us=%d p99_us=%d avg_us=%.1f max_us=%d duration_us=%d\n",
      summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
      sent, wrapped, summary.requests / secs,
      latency:percentile(50), latency:percentile(99), latency.mean,
      latency.max, summary.duration))
end
