// The log viewer of a job page: follows live lines (HTML the server escaped) while the reader is at the bottom, keeps at most MAX lines, loads earlier ones on demand, filters a fleet's servers, shows times in the reader's zone.
(function () {
  "use strict";
  var MAX = 5000;
  var log = document.getElementById("log");
  if (!log) { return; }
  var job = log.dataset.job;
  var live = document.getElementById("live");
  var earlier = document.getElementById("earlier");
  var filter = document.getElementById("server-filter");
  var status = document.getElementById("job-status");
  var following = true;

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }
  function dress(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      t.textContent = new Date(t.getAttribute("datetime")).toLocaleTimeString([], { hour12: false });
    });
    if (filter && filter.value) {
      root.querySelectorAll(".l").forEach(function (line) {
        line.hidden = line.dataset.server !== filter.value;
      });
    }
    return root;
  }
  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  }
  function toBottom() {
    log.scrollTop = log.scrollHeight;
  }

  dress(log);
  toBottom();
  log.addEventListener("scroll", function () {
    following = atBottom();
    live.hidden = following || log.dataset.running !== "true";
  });
  live.addEventListener("click", function () {
    following = true;
    live.hidden = true;
    toBottom();
  });
  if (filter) {
    filter.addEventListener("change", function () {
      log.querySelectorAll(".l").forEach(function (line) {
        line.hidden = filter.value !== "" && line.dataset.server !== filter.value;
      });
    });
  }
  earlier.addEventListener("click", function () {
    var first = log.firstElementChild;
    var before = first ? first.dataset.seq : "1";
    fetch("/jobs/" + job + "/lines?before=" + before, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var height = log.scrollHeight;
        var lines = dress(fragment(html));
        var count = lines.children.length;
        log.insertBefore(lines, log.firstChild);
        log.scrollTop += log.scrollHeight - height;
        var top = log.firstElementChild;
        earlier.hidden = count === 0 || (top !== null && top.dataset.seq === "1");
      });
  });

  if (log.dataset.running !== "true") { return; }
  var last = log.lastElementChild ? log.lastElementChild.dataset.seq : "0";
  var source = new EventSource("/jobs/" + job + "/live?after=" + last);
  // Lines are shown in batches, a few times a second: one insert, one trim
  // and one scroll per batch. Doing all three per line cost a layout per
  // line, and a fast script's stream then outran the page by far.
  var pending = [];
  var flushing = false;
  function flush() {
    flushing = false;
    if (pending.length === 0) { return; }
    var lines = dress(fragment(pending.join("")));
    pending = [];
    log.appendChild(lines);
    var extra = log.children.length - MAX;
    if (extra > 0) { earlier.hidden = false; }
    for (; extra > 0; extra--) { log.removeChild(log.firstElementChild); }
    if (following) { toBottom(); }
  }
  function add(event) {
    pending.push(event.data);
    // Lines that would be trimmed on arrival are not kept meanwhile either
    // (a hidden tab's timers are slowed down).
    if (pending.length > MAX) {
      pending.splice(0, pending.length - MAX);
      earlier.hidden = false;
    }
    if (!flushing) {
      flushing = true;
      setTimeout(flush, 50);
    }
  }
  ["stdout", "stderr", "system"].forEach(function (kind) {
    source.addEventListener(kind, add);
  });
  source.addEventListener("end", function (event) {
    source.close();
    // The last lines first, so a finished status never shows beside a log
    // that still lacks them.
    flush();
    log.dataset.running = "false";
    live.hidden = true;
    var end = JSON.parse(event.data);
    status.textContent = end.status;
    status.className = "status " + end.status;
  });
})();
