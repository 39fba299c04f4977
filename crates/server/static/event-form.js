// The event form's live schedule preview: asks the server for the next fire
// times as the schedule is typed, and shows only the fields its type uses.
"use strict";
(function () {
  const type = document.getElementById("schedule-type");
  const preview = document.getElementById("preview");
  if (!type || !preview) return;
  const fields = { cron: ["cron", "timezone"], every: ["every"], at: ["at"], manual: [] };
  const inputs = ["cron", "timezone", "every", "at"].map((id) => document.getElementById(id));

  // Each input and its label are shown only for the types that use them.
  function showFields() {
    const used = fields[type.value] || [];
    for (const input of inputs) {
      const on = used.includes(input.id);
      input.hidden = !on;
      const label = document.querySelector('label[for="' + input.id + '"]');
      if (label) label.hidden = !on;
    }
  }

  let timer = null;
  let asked = 0;
  async function refresh() {
    const query = new URLSearchParams({ type: type.value });
    for (const input of inputs) query.set(input.id, input.value);
    const mine = ++asked;
    let answer;
    try {
      const response = await fetch("/events/preview?" + query, { credentials: "same-origin" });
      answer = await response.json();
    } catch (e) {
      return; // Offline or signed out: the form still works without the preview.
    }
    if (mine !== asked) return; // A newer question is on its way.
    render(answer);
  }

  function render(answer) {
    for (const old of preview.querySelectorAll("#preview-error, #preview-none")) old.remove();
    const list = document.getElementById("preview-fires");
    list.replaceChildren();
    for (const fire of answer.fires || []) {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = fire.utc;
      time.title = fire.utc;
      time.textContent = fire.local;
      item.append(time);
      list.append(item);
    }
    const note = document.createElement("p");
    if (answer.error) {
      note.id = "preview-error";
      note.className = "error";
      note.textContent = answer.error;
    } else if (!answer.fires || answer.fires.length === 0) {
      note.id = "preview-none";
      note.className = "hint";
      note.textContent = "none: this event runs only when started by hand or by the API";
    } else {
      return;
    }
    preview.append(note);
  }

  function changed() {
    showFields();
    clearTimeout(timer);
    timer = setTimeout(refresh, 200);
  }
  type.addEventListener("change", changed);
  for (const input of inputs) input.addEventListener("input", changed);
  showFields();
})();
