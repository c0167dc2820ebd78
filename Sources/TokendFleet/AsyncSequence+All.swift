extension AsyncSequence {
    /// Every element, in order (decoded query results are small: one row
    /// per identity, lease or key term).
    package func allElements() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }
}
