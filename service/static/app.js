// The upload page: sign in (session cookie), upload with Uppy through the Companion-style routes,
// list and delete recordings. No build step: Uppy comes from static/vendor/uppy.min.js.
;(() => {
  'use strict'

  const $ = (id) => document.getElementById(id)
  const apiUrl = (path) => new URL(path, document.baseURI).toString()
  const MiB = 1024 * 1024
  let config = null
  let uppy = null
  // The last problem+json answer per filename or key, so Uppy's errors can say what went wrong.
  const problems = new Map()

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`
    if (bytes < MiB) return `${(bytes / 1024).toFixed(1)} KiB`
    if (bytes < 1024 * MiB) return `${(bytes / MiB).toFixed(1)} MiB`
    return `${(bytes / 1024 / MiB).toFixed(2)} GiB`
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag)
    for (const [name, value] of Object.entries(attrs)) {
      if (name === 'class') node.className = value
      else if (name === 'text') node.textContent = value
      else node.setAttribute(name, value)
    }
    for (const child of children) node.append(child)
    return node
  }

  function say(text, kind = 'info') {
    const box = $('message')
    box.className = `message ${kind}`
    box.setAttribute('role', kind === 'error' ? 'alert' : 'status')
    box.textContent = text
  }

  async function problemText(response) {
    try {
      const body = await response.json()
      if (body && body.detail) return body.detail
    } catch (_) {
      // not JSON: fall through to the status line
    }
    return `${response.status} ${response.statusText || 'error'}`
  }

  async function call(path, options = {}) {
    const response = await fetch(apiUrl(path), { credentials: 'same-origin', ...options })
    if (!response.ok) {
      const error = new Error(await problemText(response))
      error.status = response.status
      throw error
    }
    return response.status === 204 ? null : response.json()
  }

  // Uppy reports only "Companion request failed: <status text>"; keep the service's own words.
  const originalFetch = window.fetch.bind(window)
  window.fetch = async (input, init) => {
    const response = await originalFetch(input, init)
    const url = new URL(typeof input === 'string' ? input : input.url, document.baseURI)
    if (!response.ok && url.pathname.includes('/v1/s3/')) {
      let id = url.searchParams.get('filename') || url.searchParams.get('key')
      if (!id && init && typeof init.body === 'string') {
        try { id = JSON.parse(init.body).filename } catch (_) { id = null }
      }
      if (id) problems.set(id, await problemText(response.clone()))
    }
    return response
  }

  // Sign in / out -------------------------------------------------------------------------------

  function showSignedIn(tenant) {
    $('tenant').textContent = tenant
    $('who').hidden = false
    $('sign-in').hidden = true
    $('upload').hidden = false
    $('recordings').hidden = false
    setUpUppy()
    refreshRecordings()
  }

  function showSignedOut() {
    $('who').hidden = true
    $('sign-in').hidden = false
    $('upload').hidden = true
    $('recordings').hidden = true
  }

  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault()
    const token = $('token').value.trim()
    if (!token) {
      say('Enter an API key or token to sign in.', 'error')
      $('token').focus()
      return
    }
    try {
      const session = await call('v1/auth/session', { method: 'POST', headers: { Authorization: `Bearer ${token}` } })
      $('token').value = ''
      say(`Signed in as ${session.tenant}.`, 'ok')
      showSignedIn(session.tenant)
      $('file-input').focus()
    } catch (error) {
      say(`Sign-in failed: ${error.message}`, 'error')
      $('token').setAttribute('aria-invalid', 'true')
      $('token').focus()
    }
  })

  $('sign-out').addEventListener('click', async () => {
    try {
      await call('v1/auth/session', { method: 'DELETE' })
    } catch (_) {
      // the cookie is cleared either way
    }
    if (uppy) uppy.cancelAll()
    $('uploads').replaceChildren()
    $('recording-list').replaceChildren()
    showSignedOut()
    say('Signed out.', 'ok')
    $('token').focus()
  })

  // Uploads ---------------------------------------------------------------------------------------

  function partSize(size) {
    // The server's plan (uploads.plan_parts): whole MiB, at least the configured part size,
    // few enough parts for S3. Uppy must cut the file the same way.
    const needed = Math.ceil(size / config.max_parts)
    return Math.max(config.min_part_bytes, config.multipart_part_bytes, Math.ceil(needed / MiB) * MiB)
  }

  function setUpUppy() {
    if (uppy) return
    const { Uppy, AwsS3 } = globalThis.Uppy
    uppy = new Uppy({
      autoProceed: false,
      restrictions: {
        maxFileSize: config.max_upload_bytes,
        allowedFileTypes: config.allowed_content_types.map((t) => t.replace(/\/\*$/, '/*')),
      },
    })
    uppy.use(AwsS3, {
      companionEndpoint: apiUrl('v1').replace(/\/$/, ''),
      shouldUseMultipart: (file) => file.size > config.multipart_threshold_bytes,
      getChunkSize: ({ size }) => partSize(size),
      limit: 3,
    })
    uppy.on('upload-progress', (file, progress) => {
      const row = rowFor(file)
      if (!row || !progress.bytesTotal) return
      row.bar.max = progress.bytesTotal
      row.bar.value = progress.bytesUploaded
      row.bar.setAttribute('aria-valuetext', `${formatBytes(progress.bytesUploaded)} of ${formatBytes(progress.bytesTotal)}`)
      setState(row, `Uploading: ${formatBytes(progress.bytesUploaded)} of ${formatBytes(progress.bytesTotal)}`)
    })
    uppy.on('upload-success', async (file) => {
      const row = rowFor(file)
      if (row) {
        row.bar.value = row.bar.max
        setState(row, 'Uploaded. Checking…')
        row.retry.hidden = true
        row.cancel.hidden = true
      }
      await refreshRecordings()
      if (row) setState(row, 'Uploaded and verified', 'ok')
    })
    uppy.on('upload-error', (file, error) => {
      const row = rowFor(file)
      const key = file.s3Multipart && file.s3Multipart.key
      const detail = problems.get(file.name) || (key && problems.get(key)) || error.message
      if (row) {
        setState(row, `Upload failed: ${detail}`, 'error')
        row.retry.hidden = false
      }
      say(`${file.name}: upload failed: ${detail}`, 'error')
    })
    uppy.on('complete', (result) => {
      const done = result.successful.length
      const failed = result.failed.length
      if (failed) say(`${done} uploaded, ${failed} failed: see the list below to retry.`, 'error')
      else if (done) say(`${done} file${done === 1 ? '' : 's'} uploaded.`, 'ok')
    })
    uppy.on('restriction-failed', (file, error) => {
      say(`${file ? file.name : 'File'}: ${error.message}`, 'error')
    })
  }

  const rows = new Map()

  function rowFor(file) {
    return rows.get(file.id)
  }

  function setState(row, text, kind = '') {
    row.state.textContent = text
    row.state.className = `state ${kind}`
  }

  function addRow(file) {
    const bar = el('progress', { max: String(file.size || 1), value: '0', 'aria-label': `Upload progress of ${file.name}` })
    const state = el('p', { class: 'state', text: 'Waiting…' })
    const retry = el('button', { type: 'button', class: 'secondary', text: 'Retry', 'aria-label': `Retry ${file.name}` })
    const cancel = el('button', { type: 'button', class: 'danger', text: 'Cancel', 'aria-label': `Cancel ${file.name}` })
    retry.hidden = true
    retry.addEventListener('click', () => {
      retry.hidden = true
      setState(row, 'Resuming…')
      uppy.retryUpload(file.id)
    })
    cancel.addEventListener('click', () => {
      uppy.removeFile(file.id)
      setState(row, 'Cancelled', 'error')
      retry.hidden = true
      cancel.hidden = true
      setTimeout(refreshRecordings, 500)
    })
    const multipart = file.size > config.multipart_threshold_bytes
    const item = el(
      'li',
      { 'data-file': file.name },
      el('div', { class: 'row-head' },
        el('span', { class: 'name', text: file.name }),
        el('span', { class: 'state', text: `${formatBytes(file.size)}, ${multipart ? `in ${Math.ceil(file.size / partSize(file.size))} parts` : 'single upload'}` })),
      bar,
      state,
      el('div', { class: 'actions' }, retry, cancel),
    )
    const row = { item, bar, state, retry, cancel }
    rows.set(file.id, row)
    $('uploads').prepend(item)
    $('no-uploads').hidden = true
    return row
  }

  function addFiles(fileList) {
    const added = []
    for (const file of fileList) {
      try {
        // Uppy does not tell the server a file's size; the service needs it to pin the upload.
        const id = uppy.addFile({ name: file.name, type: file.type || undefined, data: file, meta: { size: file.size } })
        added.push(uppy.getFile(id))
      } catch (error) {
        say(`${file.name}: ${error.message}`, 'error')
      }
    }
    for (const file of added) addRow(file)
    if (added.length) {
      say(`Uploading ${added.length} file${added.length === 1 ? '' : 's'}…`)
      uppy.upload().catch((error) => say(`Upload failed: ${error.message}`, 'error'))
    }
  }

  $('file-input').addEventListener('change', (event) => {
    addFiles(Array.from(event.target.files))
    event.target.value = ''
  })

  const zone = $('drop-zone')
  zone.addEventListener('dragover', (event) => {
    event.preventDefault()
    zone.classList.add('dragging')
  })
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'))
  zone.addEventListener('drop', (event) => {
    event.preventDefault()
    zone.classList.remove('dragging')
    if (!uppy) return
    addFiles(Array.from(event.dataTransfer.files))
  })

  // Recordings ------------------------------------------------------------------------------------

  const PAGE_SIZE = 20
  const listing = { deleted: false, cursor: null }

  async function refreshRecordings() {
    listing.cursor = null
    await loadRecordings(false)
  }

  async function loadRecordings(append) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) })
    if (listing.deleted) query.set('status', 'deleted')
    if (append && listing.cursor) query.set('cursor', listing.cursor)
    let page
    try {
      page = await call(`v1/recordings?${query}`)
    } catch (error) {
      if (error.status === 401) {
        showSignedOut()
        say('Your session has ended: sign in again.', 'error')
      } else {
        say(`Could not load your recordings: ${error.message}`, 'error')
      }
      return
    }
    const list = $('recording-list')
    const items = page.items.map(recordingItem)
    if (append) list.append(...items)
    else list.replaceChildren(...items)
    listing.cursor = page.next_cursor
    $('load-more').hidden = !page.next_cursor
    $('no-recordings').hidden = list.children.length > 0
    $('no-recordings').textContent = listing.deleted ? 'No deleted recordings.' : 'You have no recordings yet.'
    return items
  }

  function playable(recording) {
    return recording.status === 'available' && /^(audio|video)\//.test(recording.content_type)
  }

  function restorable(recording) {
    if (recording.status !== 'deleted' || !recording.completed_at || !recording.deleted_at) return false
    const until = new Date(recording.deleted_at).getTime() + config.restore_window_days * 86400000
    return Date.now() < until
  }

  function describe(recording) {
    const size = recording.size_bytes == null ? 'size checked when the upload arrives' : formatBytes(recording.size_bytes)
    const details = [size, recording.content_type, new Date(recording.created_at).toLocaleString()]
    if (recording.status === 'deleted' && recording.deleted_at) {
      details.push(`deleted ${new Date(recording.deleted_at).toLocaleString()}`)
    }
    return details.join(' · ')
  }

  function recordingItem(recording) {
    const name = recording.title || recording.filename
    const item = el('li', { 'data-id': recording.id, 'data-status': recording.status })
    const head = el('div', { class: 'row-head' },
      el('span', { class: 'name', text: name }),
      el('span', { class: `badge ${recording.status}`, text: recording.status }))
    item.append(head, el('p', { class: 'state', text: describe(recording) }))
    if (recording.failure_reason && recording.status !== 'deleted') {
      item.append(el('p', { class: 'state error', text: `Why it failed: ${recording.failure_reason}` }))
    }
    const actions = el('div', { class: 'actions' })
    item.append(actions)
    if (playable(recording)) actions.append(playButton(recording, name, item))
    if (recording.status === 'available') {
      actions.append(
        el('a', {
          class: 'button secondary',
          href: apiUrl(`v1/recordings/${recording.id}/download?redirect=true`),
          text: 'Download',
          'aria-label': `Download ${name}`,
        }),
      )
    }
    if (recording.status === 'deleted') {
      if (restorable(recording)) actions.append(restoreButton(recording, name))
      else item.append(el('p', { class: 'state', text: 'Can no longer be restored.' }))
    } else {
      actions.append(renameButton(recording, name, item), deleteButton(recording, name))
    }
    return item
  }

  function playButton(recording, name, item) {
    const button = el('button', { type: 'button', class: 'secondary', text: 'Play', 'aria-label': `Play ${name}`,
      'aria-expanded': 'false' })
    let player = null
    button.addEventListener('click', async () => {
      if (player) {
        player.remove()
        player = null
        button.textContent = 'Play'
        button.setAttribute('aria-label', `Play ${name}`)
        button.setAttribute('aria-expanded', 'false')
        return
      }
      try {
        const link = await call(`v1/recordings/${recording.id}/play`)
        const kind = recording.content_type.startsWith('video/') ? 'video' : 'audio'
        player = el(kind, { controls: '', preload: 'metadata', src: link.url, 'aria-label': `Player for ${name}`,
          class: 'player' })
        item.append(player)
        button.textContent = 'Hide player'
        button.setAttribute('aria-label', `Hide player for ${name}`)
        button.setAttribute('aria-expanded', 'true')
        player.focus()
      } catch (error) {
        say(`Could not play ${name}: ${error.message}`, 'error')
      }
    })
    return button
  }

  function renameButton(recording, name, item) {
    const button = el('button', { type: 'button', class: 'secondary', text: 'Rename', 'aria-label': `Rename ${name}` })
    button.addEventListener('click', () => {
      const inputId = `title-${recording.id}`
      const input = el('input', { id: inputId, type: 'text', maxlength: '200', value: name })
      const save = el('button', { type: 'submit', text: 'Save' })
      const cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel' })
      const form = el('form', { class: 'rename' },
        el('label', { for: inputId, text: `New title for ${name}` }), input, el('div', { class: 'actions' }, save, cancel))
      const close = () => {
        form.remove()
        button.hidden = false
        button.focus()
      }
      cancel.addEventListener('click', close)
      form.addEventListener('keydown', (event) => {
        if (event.key === 'Escape') close()
      })
      form.addEventListener('submit', async (event) => {
        event.preventDefault()
        const title = input.value.trim()
        if (!title) {
          say('Enter a title.', 'error')
          input.focus()
          return
        }
        try {
          await call(`v1/recordings/${recording.id}`, {
            method: 'PATCH',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ title }),
          })
          say(`Renamed ${name} to ${title}.`, 'ok')
          await refreshRecordings()
          focusAction(recording.id, 'Rename')
        } catch (error) {
          say(`Could not rename ${name}: ${error.message}`, 'error')
          input.focus()
        }
      })
      button.hidden = true
      item.append(form)
      input.focus()
      input.select()
    })
    return button
  }

  function deleteButton(recording, name) {
    const remove = el('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': `Delete ${name}` })
    remove.addEventListener('click', async () => {
      remove.disabled = true
      try {
        await call(`v1/recordings/${recording.id}`, { method: 'DELETE' })
        say(`Deleted ${name}. It can be restored from the deleted recordings for ${config.restore_window_days} days.`, 'ok')
        await refreshRecordings()
        $('refresh').focus()
      } catch (error) {
        remove.disabled = false
        say(`Could not delete ${name}: ${error.message}`, 'error')
      }
    })
    return remove
  }

  function restoreButton(recording, name) {
    const button = el('button', { type: 'button', text: 'Restore', 'aria-label': `Restore ${name}` })
    button.addEventListener('click', async () => {
      button.disabled = true
      try {
        await call(`v1/recordings/${recording.id}/restore`, { method: 'POST' })
        say(`Restored ${name}.`, 'ok')
        await refreshRecordings()
        $('show-deleted').focus()
      } catch (error) {
        button.disabled = false
        say(`Could not restore ${name}: ${error.message}`, 'error')
      }
    })
    return button
  }

  function focusAction(recordingId, label) {
    const item = $('recording-list').querySelector(`li[data-id="${recordingId}"]`)
    const target = item && [...item.querySelectorAll('button')].find((b) => b.textContent === label)
    if (target) target.focus()
  }

  $('refresh').addEventListener('click', refreshRecordings)
  $('load-more').addEventListener('click', async () => {
    const added = await loadRecordings(true)
    if (added && added.length) {
      say(`Showing ${$('recording-list').children.length} recordings.`)
      const first = added[0].querySelector('button, a')
      if (first) first.focus()
    }
  })
  $('show-deleted').addEventListener('click', async () => {
    listing.deleted = !listing.deleted
    const button = $('show-deleted')
    button.textContent = listing.deleted ? 'Show current recordings' : 'Show deleted recordings'
    $('recordings-heading').textContent = listing.deleted ? 'Deleted recordings' : 'Your recordings'
    $('deleted-help').hidden = !listing.deleted
    $('deleted-help').textContent =
      `Deleted recordings can be restored for ${config.restore_window_days} days after they were deleted.`
    await refreshRecordings()
  })

  // Start -----------------------------------------------------------------------------------------

  async function start() {
    try {
      config = await call('v1/browser/config')
    } catch (error) {
      say(`The service is not reachable: ${error.message}`, 'error')
      return
    }
    $('limits').textContent =
      `Up to ${formatBytes(config.max_upload_bytes)} per file; files above ${formatBytes(config.multipart_threshold_bytes)} ` +
      'go up in parts and can resume after a dropped connection.'
    try {
      const session = await call('v1/auth/session')
      showSignedIn(session.tenant)
    } catch (_) {
      showSignedOut()
    }
  }

  start()
})()
