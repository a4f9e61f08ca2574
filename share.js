// Handing regions to a spawned child: `shareWith(regions, spawnOptions)` in the parent,
// `inherited()` in the child. fd-backed regions travel as extra `stdio` descriptors, named
// regions, files and named semaphores by name; the list rides in the SHMKIT_INHERITED
// environment variable, whose format docs/layout.md describes ("Handing regions to a spawned
// process") so that a child in another language can read it (Rust: `shmkit::inherited()`).
// Anonymous and /dev/zero regions cannot cross `exec` and are refused.
'use strict'

const { closeSync } = require('node:fs')

/** The environment variable that carries the list to the child. */
const ENV_VAR = 'SHMKIT_INHERITED'

/**
 * `shareWith` and `inherited` over the binding's public API. `handOverDescriptor(region)` is
 * the one native helper: the descriptor a memfd region maps (borrowed, not duplicated, so
 * nothing is left for anyone to close), or `null` for other kinds; it throws
 * `ERR_SHM_CLOSED` for a closed region.
 */
function makeShare(binding, handOverDescriptor) {
  const { SharedMemory, Semaphore } = binding

  /**
   * Returns a copy of `options` for `child_process.spawn`/`fork` that hands `regions` to the
   * child: fd-backed regions (`memfd`, `fromFd`) are appended to `stdio` as descriptors, named
   * regions, files and named semaphores go by name, and the list is put in the
   * `SHMKIT_INHERITED` environment variable (added to `options.env`, or to a copy of
   * `process.env`). In the child, `inherited()` maps them in the same order.
   */
  function shareWith(regions, options) {
    if (!Array.isArray(regions)) throw invalidType('regions', 'an instance of Array', regions)
    if (options !== undefined && options !== null && typeof options !== 'object') {
      throw invalidType('options', 'of type object', options)
    }
    const result = Object.assign({}, options)

    // stdio, normalised as Node does: a string is used for 0..2; missing entries are undefined.
    let stdio
    if (result.stdio === undefined || result.stdio === null) stdio = []
    else if (typeof result.stdio === 'string') stdio = [result.stdio, result.stdio, result.stdio]
    else if (Array.isArray(result.stdio)) stdio = Array.from(result.stdio)
    else throw invalidType('options.stdio', 'of type string or Array', result.stdio)
    while (stdio.length < 3) stdio.push(undefined)

    const fds = []
    const entries = regions.map((value, index) => {
      const arg = `regions[${index}]`
      if (value instanceof Semaphore) {
        if (value.name === null) {
          throw invalidValue(
            arg,
            'is a semaphore inside a region: it travels with its region. Hand over the region and ' +
              'attach in the child with Semaphore.at(region, offset)',
            'an in-region Semaphore',
          )
        }
        return { kind: 'semaphore', name: value.name }
      }
      if (!(value instanceof SharedMemory)) {
        throw invalidType(arg, 'an instance of SharedMemory or Semaphore', value)
      }
      const fd = handOverDescriptor(value) // first: throws ERR_SHM_CLOSED for a closed region
      const refuse = (reason) => invalidValue(arg, reason, `kind '${value.kind}'`)
      const readOnly = value.readOnly
      if (value.private && !readOnly) {
        throw refuse("is private (MAP_PRIVATE): it is this process's own copy, so a child would never share it")
      }
      if (value.kind === 'memfd' && fd !== null) {
        fds.push(fd)
        return { readOnly, kind: 'memfd', fd: stdio.length + fds.length - 1 }
      }
      if ((value.kind === 'named' || value.kind === 'file') && value.name !== null) {
        return { readOnly, kind: value.kind, name: value.name }
      }
      throw refuse(
        'cannot cross exec: anonymous and /dev/zero memory has no descriptor or name a spawned process could map. ' +
          'Create it with SharedMemory.memfd() (handed over as a descriptor) or SharedMemory.create() (opened by name), ' +
          'or run the child with fork()',
      )
    })
    result.stdio = stdio.concat(fds)

    if (result.env !== undefined && result.env !== null && typeof result.env !== 'object') {
      throw invalidType('options.env', 'of type object', result.env)
    }
    result.env = Object.assign({}, result.env ?? process.env, { [ENV_VAR]: JSON.stringify(entries) })
    return result
  }

  /**
   * In a child started with `shareWith(...)` options: maps the regions (and opens the named
   * semaphores) handed over, in the order given to `shareWith`, and returns them (an empty
   * array when there are none). The inherited descriptors are closed after mapping (each
   * region keeps its own) and `SHMKIT_INHERITED` is removed from `process.env`, so call it once.
   */
  function inherited() {
    const text = process.env[ENV_VAR]
    if (typeof text !== 'string') return []
    let list
    try {
      list = JSON.parse(text)
    } catch {
      throw invalidEnv('not JSON')
    }
    if (!Array.isArray(list)) throw invalidEnv('not an array')
    const handles = []
    try {
      for (const entry of list) handles.push(open(entry))
    } catch (error) {
      for (const handle of handles) handle.close()
      throw error
    }
    delete process.env[ENV_VAR]
    return handles
  }

  /** Maps one entry of the list (or opens its semaphore). */
  function open(entry) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw invalidEnv('an entry is not an object')
    }
    if (typeof entry.kind !== 'string') throw malformed('kind')
    const readOnly = entry.readOnly ?? false
    if (typeof readOnly !== 'boolean') throw malformed('readOnly')
    // A read-only view is copy-on-write, never PROT_READ (as in SharedMemory.open).
    const byName = (what, openIt) => {
      if (typeof entry.name !== 'string') throw malformed('name')
      try {
        return openIt(entry.name)
      } catch (error) {
        if (error?.code === 'ERR_INVALID_ARG_VALUE' || error?.code === 'ERR_INVALID_ARG_TYPE') throw malformed(what)
        throw error
      }
    }
    switch (entry.kind) {
      case 'memfd': {
        const fd = entry.fd
        if (!Number.isInteger(fd) || fd < 3 || fd > 2 ** 31 - 1) throw malformed('fd')
        const region = SharedMemory.fromFd(fd, { readOnly })
        // The handed-over descriptor was ours to consume: the region holds its own duplicate.
        closeSync(fd)
        return region
      }
      case 'named':
        return byName('name', (name) => SharedMemory.open(name, { readOnly }))
      case 'file':
        return byName('name', (path) => SharedMemory.file(path, undefined, { create: false, readOnly }))
      case 'semaphore':
        return byName('name', (name) => Semaphore.open(name))
      default:
        throw invalidEnv(`unknown kind '${entry.kind}' (was the parent using a newer shmkit?)`)
    }
  }

  return { shareWith, inherited }
}

/** Node's `ERR_INVALID_ARG_TYPE`: `The "arg" argument must be T. Received …`. */
function invalidType(arg, expected, value) {
  const noun = arg.includes('.') ? 'property' : 'argument'
  return nodeError(
    TypeError,
    'ERR_INVALID_ARG_TYPE',
    `The "${arg}" ${noun} must be ${expected}. Received ${describe(value)}`,
  )
}

/** Node's `ERR_INVALID_ARG_VALUE`: `The argument 'arg' reason. Received …`. */
function invalidValue(arg, reason, received) {
  return nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', `The argument '${arg}' ${reason}. Received ${received}`)
}

function invalidEnv(reason) {
  return nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', `The environment variable ${ENV_VAR} is invalid: ${reason}`)
}

function malformed(what) {
  return invalidEnv(`an entry has no valid ${what}`)
}

function nodeError(Class, code, message) {
  const error = new Class(message)
  error.code = code
  return error
}

/** A received value as Node's argument errors show it. */
function describe(value) {
  if (value === undefined || value === null) return String(value)
  if (typeof value === 'function') return 'function'
  if (typeof value === 'object') return `an instance of ${value.constructor?.name || 'Object'}`
  if (typeof value === 'string') return `type string ('${value.length > 25 ? `${value.slice(0, 25)}...` : value}')`
  if (typeof value === 'symbol' || typeof value === 'bigint') return `type ${typeof value}`
  return `type ${typeof value} (${String(value)})`
}

module.exports = { makeShare }
