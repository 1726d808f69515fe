// dripml's pages: upload the data file (or pick one of the recipe's data sets), fill the column
// lists, submit a run, follow its progress, cancel/resume, deploy. Our own small script: no
// framework, no third-party file.
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // POST to the API with the CSRF header; resolves to the parsed JSON body, or throws an
  // Error whose .detail is the API's {"detail": ...} (a string, an object or a list).
  async function post(url, body) {
    const init = {method: "POST", headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin"};
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      const error = new Error("The server did not answer. Is drip ui still running?");
      error.detail = error.message;
      throw error;
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail !== undefined ? data.detail
        : `The server answered ${response.status} ${response.statusText}.`;
      const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      error.detail = detail;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function show(el, text) {
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  // ---------------------------------------------------------------- the recipe form
  function knobOf(detail) {
    // "knob 'label': ..." (KnobError), {"knob": "label", ...}, or FastAPI's 422 list.
    if (detail && typeof detail === "object" && !Array.isArray(detail)) {
      return detail.knob || detail.field || null;
    }
    if (typeof detail === "string") {
      const m = detail.match(/knob '([^']+)'/);
      if (m) return m[1];
      if (/^(file|upload)\b/i.test(detail)) return "file";
    }
    return null;
  }

  function messageOf(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => (d.loc ? d.loc.slice(1).join(".") + ": " : "") + d.msg).join("; ");
    }
    if (detail && typeof detail === "object") return detail.message || detail.msg || JSON.stringify(detail);
    return String(detail);
  }

  function clearErrors(form) {
    form.querySelectorAll(".error").forEach((el) => show(el, ""));
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function showError(form, detail) {
    const key = knobOf(detail);
    const text = messageOf(detail);
    const target = key && (document.getElementById("error-" + key));
    if (target) {
      // Next to its field the message need not name the knob again.
      show(target, text.replace(/^knob '[^']+':\s*/, "").replace(/^(file|upload):\s*/i, ""));
      const input = document.getElementById(key === "file" ? "file" : "knob-" + key)
        || document.getElementById(key);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    } else {
      show(document.getElementById("form-error"), text);
    }
  }

  function fillColumns(form, columns) {
    form.querySelectorAll("select.column-select").forEach((select) => {
      const previous = select.value || select.dataset.default;
      select.innerHTML = "";
      const blank = new Option("Choose a column", "");
      select.add(blank);
      columns.forEach((c) => select.add(new Option(c, c)));
      if (previous && columns.includes(previous)) select.value = previous;
      select.disabled = false;
    });
  }

  function resetColumns(form) {
    form.querySelectorAll("select.column-select").forEach((select) => {
      select.innerHTML = "";
      select.add(new Option("Choose a data file first", ""));
      select.disabled = true;
    });
  }

  function collectParams(form) {
    const params = {};
    form.querySelectorAll("[data-knob]").forEach((field) => {
      const key = field.dataset.knob;
      const type = field.dataset.type;
      if (type === "multichoice") {
        params[key] = Array.from(field.querySelectorAll('input[type="checkbox"]:checked'))
          .map((box) => box.value);
        return;
      }
      const input = document.getElementById("knob-" + key);
      if (!input) return;
      if (type === "boolean") {
        params[key] = input.checked;
      } else if (["number", "integer", "duration", "latency"].includes(type)) {
        if (input.value.trim() === "") return;  // empty: the recipe's default, or none
        params[key] = Number(input.value);
        if (Number.isNaN(params[key])) params[key] = input.value;  // let the server name it
      } else if (input.value !== "") {
        params[key] = input.value;
      }
    });
    return params;
  }

  function setupRunForm(form) {
    const file = document.getElementById("file");
    const status = document.getElementById("upload-status");
    const submit = document.getElementById("submit-run");
    const submitStatus = document.getElementById("submit-status");
    let upload = null;        // {id, columns, rows} once the chosen file is on the server
    let uploading = null;     // the pending upload's promise

    async function uploadChosen() {
      upload = null;
      show(document.getElementById("error-file"), "");
      const chosen = file.files && file.files[0];
      if (!chosen) { status.textContent = ""; return null; }
      status.textContent = `Uploading ${chosen.name}…`;
      const body = new FormData();
      body.append("file", chosen);
      try {
        upload = await post("/api/uploads", body);
        status.textContent = `${chosen.name} uploaded: ${upload.columns.length} columns.`;
        if (!source) fillColumns(form, upload.columns);
        return upload;
      } catch (error) {
        status.textContent = "";
        show(document.getElementById("error-file"), messageOf(error.detail));
        file.setAttribute("aria-invalid", "true");
        return null;
      }
    }

    file.addEventListener("change", () => { uploading = uploadChosen(); });

    // "Your data": the upload, or one of the recipe's data sets (radios, when it has some).
    const uploadField = document.getElementById("upload-field");
    const sourceStatus = document.getElementById("source-status");
    let source = "";          // the chosen data set's name; "" for the upload
    let sourceColumns = null; // the pending/loaded columns of the chosen data set
    async function chooseSource(name) {
      source = name;
      show(document.getElementById("error-source"), "");
      if (uploadField) uploadField.hidden = Boolean(name);
      if (!name) {
        if (sourceStatus) sourceStatus.textContent = "";
        if (upload) fillColumns(form, upload.columns); else resetColumns(form);
        return null;
      }
      sourceStatus.textContent = "Reading the data set's columns…";
      const url = `/api/recipes/${encodeURIComponent(form.dataset.recipe)}/sources/` +
        `${encodeURIComponent(name)}/columns`;
      try {
        const response = await fetch(url, {credentials: "same-origin"});
        const data = await response.json();
        if (!response.ok) throw Object.assign(new Error(""), {detail: data.detail});
        if (source !== name) return null;  // another choice was made meanwhile
        sourceStatus.textContent = `${data.columns.length} columns.`;
        fillColumns(form, data.columns);
        return data.columns;
      } catch (error) {
        sourceStatus.textContent = "";
        show(document.getElementById("error-source"), messageOf(error.detail || error.message));
        return null;
      }
    }
    form.querySelectorAll('input[name="data_source"]').forEach((radio) => {
      radio.addEventListener("change", () => {
        if (radio.checked) sourceColumns = chooseSource(radio.value);
      });
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      if (source) {
        if (sourceColumns) await sourceColumns;
        const body = new FormData();
        body.append("recipe", form.dataset.recipe);
        body.append("source", source);
        return startRun(body);
      }
      if (uploading) await uploading;
      if (!upload) {
        if (!(file.files && file.files[0])) {
          showError(form, {field: "file", message: "Choose a data file (CSV or Parquet) first."});
        } else if (document.getElementById("error-file").hidden) {
          showError(form, {field: "file", message: "The file could not be uploaded; choose it again."});
        }
        return;
      }
      const body = new FormData();
      body.append("recipe", form.dataset.recipe);
      body.append("upload_id", upload.id);
      return startRun(body);
    });

    async function startRun(body) {
      body.append("params", JSON.stringify(collectParams(form)));
      const pipeline = document.getElementById("pipeline");
      if (pipeline) body.append("pipeline", pipeline.value);
      submit.disabled = true;
      submitStatus.textContent = "Starting the run…";
      try {
        const run = await post("/api/runs", body);
        window.location.assign("/runs/" + encodeURIComponent(run.id));
      } catch (error) {
        submitStatus.textContent = "";
        showError(form, error.detail);
        submit.disabled = false;
      }
    }
  }

  // ---------------------------------------------------------------- cancel / resume
  function setupActions() {
    document.querySelectorAll("button[data-action]").forEach((button) => {
      button.addEventListener("click", async () => {
        button.disabled = true;
        const action = button.dataset.action;
        try {
          await post(`/api/runs/${encodeURIComponent(button.dataset.run)}/${action}`);
          window.location.reload();
        } catch (error) {
          show(document.getElementById("action-error"), messageOf(error.detail));
          button.disabled = false;
        }
      });
    });
  }

  // ---------------------------------------------------------------- live progress
  function formatNumber(value) {
    if (value === null || value === undefined || value === "") return "-";
    const n = Number(value);
    if (Number.isNaN(n)) return String(value);
    return Math.abs(n) < 1 ? n.toPrecision(4) : n.toFixed(2);
  }

  function setupProgress(section) {
    const status = section.dataset.status;
    if (status !== "queued" && status !== "running") return;
    if (!window.EventSource) {
      setTimeout(() => window.location.reload(), 5000);
      return;
    }
    const el = (id) => document.getElementById(id);
    const source = new EventSource(`/api/runs/${encodeURIComponent(section.dataset.run)}/events`);
    const update = (data) => {
      if (data.status) {
        el("run-status").textContent = data.status;
        el("run-status").className = "badge badge-" + data.status;
      }
      if (data.step) el("progress-step").textContent = data.step.replace(/\s*\(.*\)\s*$/, "");
      if (data.done !== undefined && data.done !== null) el("progress-done").textContent = data.done;
      if (data.total) {
        el("progress-total").textContent = data.total;
        const wrap = el("progress-total-wrap");
        if (wrap) wrap.hidden = false;
        el("progress-bar").max = data.total;
        el("progress-bar").value = Math.min(data.done || 0, data.total);
      }
      if (data.best_value !== undefined) el("progress-best").textContent = formatNumber(data.best_value);
      if (data.objective) el("progress-objective").textContent = data.objective;
    };
    const parse = (event) => { try { return JSON.parse(event.data); } catch (e) { return {}; } };
    source.addEventListener("progress", (event) => update(parse(event)));
    source.addEventListener("status", (event) => {
      const data = parse(event);
      update(data);
      if (!data.status || !["queued", "running"].includes(data.status)) {
        source.close();
        window.location.reload();
      }
    });
    source.onerror = () => {
      // The stream ended (the run is over) or the server went away: look again shortly.
      source.close();
      setTimeout(() => window.location.reload(), 2000);
    };
  }

  // ---------------------------------------------------------------- deploy
  function curlLine(url, example) {
    const row = example ? JSON.stringify(example) : '{"column": "value", "...": "..."}';
    const body = `{"records": [${row}]}`.replace(/'/g, "'\\''");
    return `curl -X POST ${url.replace(/\/$/, "")}/predict -H 'Content-Type: application/json' -d '${body}'`;
  }

  function setupDeploy(form) {
    const select = document.getElementById("deploy-version");
    const button = document.getElementById("deploy-button");
    const status = document.getElementById("deploy-status");
    select.addEventListener("change", () => { button.textContent = `Deploy version ${select.value}`; });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      show(document.getElementById("error-deploy"), "");
      button.disabled = true;
      status.textContent = `Deploying version ${select.value}… (this takes a few seconds)`;
      try {
        const answer = await post(`/api/runs/${encodeURIComponent(form.dataset.run)}/deploy`,
          {version: Number(select.value)});
        const url = typeof answer === "string" ? answer
          : answer.endpoint_url || answer.url || answer.endpoint;
        const link = document.getElementById("endpoint-url");
        link.href = url;
        link.textContent = url;
        document.getElementById("curl-line").textContent =
          (answer && answer.curl) || curlLine(url, answer && answer.example);
        document.getElementById("deployed").hidden = false;
        status.textContent = `Version ${select.value} is live.`;
      } catch (error) {
        status.textContent = "";
        show(document.getElementById("error-deploy"), messageOf(error.detail));
      } finally {
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const runForm = document.getElementById("run-form");
    if (runForm) setupRunForm(runForm);
    const run = document.getElementById("run");
    if (run) setupProgress(run);
    const deploy = document.getElementById("deploy-form");
    if (deploy) setupDeploy(deploy);
    setupActions();
  });
})();
